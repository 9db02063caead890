//! Against the real SkyPilot API server (placeholder until the peer scripts land).

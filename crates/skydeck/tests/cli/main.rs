//! skydeck's one integration-test binary: the real `skydeck` executable against peers on
//! 127.0.0.1 (a misbehaving fake SkyPilot server, external collectors, the real SkyPilot API
//! server started by `scripts/test.sh`).

mod control;
mod control_real;
mod datadog;
mod external;
mod faults;
mod gpu;
mod pools;
mod pricing;
mod real_skypilot;
mod schemathesis;
mod secrets;
mod serve;
mod serve_discovery;
mod util;

//! The collectors: the built-in SkyPilot collector and external commands.

pub mod external;
pub mod skypilot;

pub use external::{ExternalCollector, ExternalSpec};
pub use skypilot::{BreakdownKey, SkypilotCollector, SkypilotOptions};

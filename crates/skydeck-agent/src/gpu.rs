//! GPU state from NVML, read on a thread of its own.
//!
//! NVML calls block, and a GPU that has fallen off the bus (XID 79) can make them hang for
//! minutes. The heartbeat loop must not hang with them, so one thread owns the NVML handle and
//! answers read requests; the loop waits for an answer at most [`GpuReader`]'s timeout, and
//! while a read is still out it does not queue another (it reports why instead). NVML missing
//! (a CPU node, a container without the driver) is not an error: the heartbeat carries
//! `gpus: []` and `gpu_error` says why.

use std::sync::mpsc;
use std::time::Duration;

use skydeck_contract::GpuReport;
use skydeck_contract::agent::limits;
use tokio::sync::oneshot;

use crate::engine::bounded;

/// One read's result.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GpuState {
    /// The GPUs that answered.
    pub gpus: Vec<GpuReport>,
    /// Why there is no (or only partial) GPU state.
    pub error: Option<String>,
}

/// Where GPU state comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GpuSource {
    /// NVML (`libnvidia-ml.so.1`, loaded at run time).
    #[default]
    Nvml,
    /// Not read at all (`--no-gpu`): `gpus: []` and a `gpu_error` saying so.
    Disabled,
}

type Request = oneshot::Sender<GpuState>;

/// Sends read requests to the NVML thread and waits for answers with a timeout.
#[derive(Debug)]
pub struct GpuReader {
    tx: mpsc::SyncSender<Request>,
    /// A read that timed out and may still answer.
    pending: Option<oneshot::Receiver<GpuState>>,
    timeout: Duration,
}

impl GpuReader {
    /// A reader of `source`, waiting at most `timeout` for one read.
    pub fn new(source: GpuSource, timeout: Duration) -> GpuReader {
        match source {
            GpuSource::Nvml => GpuReader::with_reader(timeout, nvml_reader()),
            GpuSource::Disabled => GpuReader::with_reader(timeout, || GpuState {
                gpus: Vec::new(),
                error: Some("GPU reading is disabled (--no-gpu)".into()),
            }),
        }
    }

    /// A reader whose reads run `read` on the reader thread: NVML in production, a scripted
    /// (or deliberately stuck) GPU in tests.
    pub fn with_reader(
        timeout: Duration,
        mut read: impl FnMut() -> GpuState + Send + 'static,
    ) -> GpuReader {
        let (tx, rx) = mpsc::sync_channel::<Request>(1);
        std::thread::Builder::new()
            .name("skydeck-nvml".into())
            .spawn(move || {
                while let Ok(reply) = rx.recv() {
                    let _ = reply.send(read());
                }
            })
            .expect("spawning the NVML thread");
        GpuReader {
            tx,
            pending: None,
            timeout,
        }
    }

    /// The GPUs now, or why not; never waits longer than the timeout.
    pub async fn read(&mut self) -> GpuState {
        let mut rx = match self.pending.take() {
            Some(rx) => rx,
            None => {
                let (reply, rx) = oneshot::channel();
                if self.tx.try_send(reply).is_err() {
                    return GpuState {
                        gpus: Vec::new(),
                        error: Some("the NVML thread is gone".into()),
                    };
                }
                rx
            }
        };
        match tokio::time::timeout(self.timeout, &mut rx).await {
            Ok(Ok(state)) => state,
            Ok(Err(_)) => GpuState {
                gpus: Vec::new(),
                error: Some("the NVML thread is gone".into()),
            },
            Err(_) => {
                // Keep waiting for this read rather than queueing more behind a stuck call.
                self.pending = Some(rx);
                GpuState {
                    gpus: Vec::new(),
                    error: Some(format!(
                        "NVML did not answer within {:?} (a GPU may be stuck)",
                        self.timeout
                    )),
                }
            }
        }
    }
}

/// The production reader: NVML initialized once on the reader thread, on first use. A failed
/// init is retried on each read (the driver may come up after the agent), and reported.
fn nvml_reader() -> impl FnMut() -> GpuState + Send + 'static {
    let mut nvml: Option<nvml_wrapper::Nvml> = None;
    move || {
        if nvml.is_none() {
            match nvml_wrapper::Nvml::init() {
                Ok(n) => nvml = Some(n),
                Err(e) => {
                    return GpuState {
                        gpus: Vec::new(),
                        error: Some(bounded(&format!("NVML is not available: {e}"))),
                    };
                }
            }
        }
        let nvml = nvml.as_ref().expect("initialized above");
        read_nvml(nvml)
    }
}

fn read_nvml(nvml: &nvml_wrapper::Nvml) -> GpuState {
    use nvml_wrapper::enum_wrappers::device::TemperatureSensor;
    let count = match nvml.device_count() {
        Ok(c) => c,
        Err(e) => {
            return GpuState {
                gpus: Vec::new(),
                error: Some(bounded(&format!("NVML device count: {e}"))),
            };
        }
    };
    let mut state = GpuState::default();
    let mut problems = Vec::new();
    for index in 0..count.min(limits::GPUS as u32) {
        let device = match nvml.device_by_index(index) {
            Ok(d) => d,
            Err(e) => {
                problems.push(format!("GPU {index}: {e}"));
                continue;
            }
        };
        // Each reading on its own: a GPU without a power sensor still reports the rest.
        let utilization = device.utilization_rates().ok().map(|u| f64::from(u.gpu));
        let memory = device.memory_info().ok();
        state.gpus.push(GpuReport {
            index,
            uuid: device.uuid().ok().map(|s| bounded(&s)),
            name: device.name().ok().map(|s| bounded(&s)),
            utilization_percent: utilization.filter(|u| (0.0..=100.0).contains(u)),
            memory_used_bytes: memory.as_ref().map(|m| m.used as f64),
            memory_total_bytes: memory.as_ref().map(|m| m.total as f64),
            temperature_celsius: device
                .temperature(TemperatureSensor::Gpu)
                .ok()
                .map(f64::from)
                .filter(|t| (0.0..=200.0).contains(t)),
            power_watts: device.power_usage().ok().map(|mw| f64::from(mw) / 1000.0),
        });
    }
    if !problems.is_empty() {
        state.error = Some(bounded(&problems.join("; ")));
    }
    state
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_stuck_gpu_does_not_stall_the_reader() {
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let mut calls = 0;
        let mut reader = GpuReader::with_reader(Duration::from_millis(50), move || {
            calls += 1;
            if calls == 1 {
                // The first read hangs until the test lets it go.
                let _ = release_rx.recv();
            }
            GpuState {
                gpus: vec![GpuReport {
                    index: 0,
                    ..GpuReport::default()
                }],
                error: None,
            }
        });
        let first = reader.read().await;
        assert!(first.error.unwrap().contains("did not answer"));
        let second = reader.read().await;
        assert!(second.error.unwrap().contains("did not answer"));
        release_tx.send(()).unwrap();
        // The stuck read finally answers; then reads are fresh again.
        let mut got = None;
        for _ in 0..100 {
            let s = reader.read().await;
            if s.error.is_none() {
                got = Some(s);
                break;
            }
        }
        assert_eq!(got.unwrap().gpus.len(), 1);
    }

    #[tokio::test]
    async fn absent_nvml_is_reported_not_fatal() {
        // This machine has no NVIDIA driver; where one is installed the read simply works.
        let mut reader = GpuReader::new(GpuSource::Nvml, Duration::from_secs(10));
        let s = reader.read().await;
        if s.gpus.is_empty() {
            assert!(s.error.unwrap().contains("NVML"));
        }
        let mut off = GpuReader::new(GpuSource::Disabled, Duration::from_secs(1));
        assert!(off.read().await.error.unwrap().contains("disabled"));
    }
}

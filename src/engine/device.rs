//! Choosing the device a job runs on, and building the network on it.
//!
//! `--device cpu|ascend|auto` (default `auto`) picks the backend. `auto` runs on an Ascend NPU
//! when CANN loads and on the CPU otherwise, as MindSpore runs on the device its installed
//! package targets (MindCV 0.3's recipes cannot name a device). Only when the user asked for the
//! NPU (the recipe key `device_target: Ascend`, or `DEVICE_ID` set) does a fall back to the CPU
//! come with a note; `device_target: CPU` keeps the CPU. An explicit `--device ascend` never
//! falls back. The device id comes from `--device_id`, else `DEVICE_ID` (MindSpore's launch
//! variable), else the rank's local rank under `mpirun`, else 0.
use crate::backend::ascend::{AscendBackend, CubeMath, Precision};
use crate::backend::cpu::CpuBackend;
use crate::backend::Backend;
use crate::config::{AmpLevel, DeviceTarget};
use crate::dist::hccl::{hccl_of, HcclCommunicator, HcclReducer};
use crate::dist::{Communicator, GradientReducer, HostStagedReducer};
use crate::model::inference::InferenceNet;
use crate::model::SeNet;
use crate::tensor::Tensor;
use crate::{Error, Result};
use std::sync::Arc;

/// What the user asked for (`--device`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    /// The recipe's `device_target`; without one an Ascend NPU when CANN loads, else the CPU
    /// (default).
    #[default]
    Auto,
    /// The CPU backend.
    Cpu,
    /// The Ascend backend through CANN; an error if CANN cannot be loaded.
    Ascend,
}

impl DeviceChoice {
    /// Parses `auto`, `cpu` or `ascend` (case-insensitive). Errors: any other value, named.
    pub fn parse(s: &str) -> Result<DeviceChoice> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(DeviceChoice::Auto),
            "cpu" => Ok(DeviceChoice::Cpu),
            "ascend" | "npu" => Ok(DeviceChoice::Ascend),
            _ => Err(Error::Config(format!(
                "--device must be auto, cpu or ascend, got '{s}'"
            ))),
        }
    }
}

/// A device request: the choice, the device id, the CPU thread count and the Ascend float32
/// cube switches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeviceRequest {
    /// `--device`.
    pub choice: DeviceChoice,
    /// `--device_id` (else `DEVICE_ID`, else 0).
    pub device_id: Option<i32>,
    /// CPU threads for the network (0 = one per core); ignored on Ascend.
    pub threads: usize,
    /// `--conv_allow_hf32` / `--matmul_allow_hf32` (torch_npu's defaults: conv HF32, matmul
    /// FLOAT); used by Ascend in float32 (amp O0) only.
    pub cube_math: CubeMath,
}

impl DeviceRequest {
    /// The CPU with `threads` threads (0 = one per core).
    pub fn cpu(threads: usize) -> DeviceRequest {
        DeviceRequest {
            choice: DeviceChoice::Cpu,
            device_id: None,
            threads,
            cube_math: CubeMath::default(),
        }
    }
}

/// The Ascend precision of a recipe's `amp_level`: O2 is MindSpore's AMP O2 (float16 compute,
/// float32 BatchNorm, loss and master weights), O0 float32. O1/O3 are refused by the recipe
/// checks before this is reached, and map to float32 here.
pub fn precision_of(amp: AmpLevel) -> Precision {
    match amp {
        AmpLevel::O2 => Precision::Fp16,
        _ => Precision::Fp32,
    }
}

/// The device a job runs on, after resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    /// The CPU backend with this many threads (0 = one per core).
    Cpu {
        /// Threads.
        threads: usize,
    },
    /// An Ascend NPU.
    Ascend {
        /// `aclrtSetDevice` id.
        id: i32,
        /// Compute precision.
        precision: Precision,
        /// The float32 cube switches.
        cube_math: CubeMath,
    },
}

impl Device {
    /// Short name for logs: `cpu`, `ascend:0 (float32)`, `ascend:0 (float16 AMP O2)`; a float32
    /// Ascend device with non-default [`CubeMath`] switches names them.
    pub fn describe(&self) -> String {
        match self {
            Device::Cpu { .. } => "cpu".into(),
            Device::Ascend { id, .. } => format!("ascend:{id} ({})", self.arithmetic()),
        }
    }

    /// The arithmetic the device does, without which device it is (what the ranks of a job
    /// must agree on): `float32` on the CPU; on Ascend `float32`, `float16 AMP O2`, or
    /// `float32, conv_allow_hf32=.., matmul_allow_hf32=..` when the [`CubeMath`] switches are
    /// not torch_npu's defaults.
    pub fn arithmetic(&self) -> String {
        match self {
            Device::Cpu { .. } => "float32".into(),
            Device::Ascend {
                precision,
                cube_math,
                ..
            } => match precision {
                Precision::Fp32 if *cube_math == CubeMath::default() => "float32".into(),
                Precision::Fp32 => format!(
                    "float32, conv_allow_hf32={}, matmul_allow_hf32={}",
                    cube_math.conv_allow_hf32, cube_math.matmul_allow_hf32
                ),
                Precision::Fp16 => "float16 AMP O2".into(),
            },
        }
    }
}

/// `DEVICE_ID` from the environment. Errors: a value that is not a non-negative integer.
fn env_device_id() -> Result<Option<i32>> {
    match std::env::var("DEVICE_ID") {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse::<i32>()
            .ok()
            .filter(|id| *id >= 0)
            .map(Some)
            .ok_or_else(|| Error::Config(format!("DEVICE_ID must be a device number, got '{v}'"))),
        _ => Ok(None),
    }
}

/// Resolves a request against the recipe's `device_target` (None: not set) and `amp_level`.
/// Returns the device and, when `auto` fell back to the CPU although the NPU was asked for
/// (`device_target: Ascend`, or `DEVICE_ID` set), a note saying why; a plain run without CANN
/// gets no note. Errors: `--device ascend` where CANN cannot be loaded (the loader's message:
/// what was tried, `source set_env.sh`), `device_target: GPU`, a bad `DEVICE_ID`.
pub fn resolve(
    req: &DeviceRequest,
    target: Option<DeviceTarget>,
    amp: AmpLevel,
) -> Result<(Device, Option<String>)> {
    let env_id = env_device_id()?;
    let device_id = match req.device_id {
        Some(id) => id,
        None => match env_id {
            Some(id) => id,
            // One process per device under mpirun: the rank's place on its machine.
            None => crate::dist::launch::detect()
                .ok()
                .and_then(|l| l.device_id)
                .map_or(0, |d| d as i32),
        },
    };
    let ascend = Device::Ascend {
        id: device_id,
        precision: precision_of(amp),
        cube_math: req.cube_math,
    };
    if matches!(amp, AmpLevel::O1 | AmpLevel::O3) && req.choice != DeviceChoice::Cpu {
        return Err(Error::Config(format!(
            "amp level {} is not implemented (O0: float32; O2: MindSpore's AMP O2, float16 \
             compute on Ascend)",
            amp.as_str()
        )));
    }
    let cpu = Device::Cpu {
        threads: req.threads,
    };
    match req.choice {
        DeviceChoice::Cpu => Ok((cpu, None)),
        DeviceChoice::Ascend => {
            ascend_available()?;
            Ok((ascend, None))
        }
        DeviceChoice::Auto => {
            let asked = match target {
                Some(DeviceTarget::Cpu) => return Ok((cpu, None)),
                Some(DeviceTarget::Gpu) => {
                    return Err(Error::Config(
                        "key 'device_target' = GPU: not supported by senet (it runs on Ascend \
                         or the CPU)"
                            .into(),
                    ))
                }
                Some(DeviceTarget::Ascend) => Some("device_target Ascend".to_string()),
                None => env_id.map(|id| format!("DEVICE_ID={id}")),
            };
            match (ascend_available(), asked) {
                (Ok(()), _) => Ok((ascend, None)),
                (Err(_), None) => Ok((cpu, None)),
                (Err(e), Some(asked)) => Ok((
                    cpu,
                    Some(format!(
                        "{asked}: no usable CANN here, running on the CPU (--device ascend \
                         makes this an error, --device cpu silences it; `senet devices` lists \
                         the places searched): {}",
                        first_line(&e.to_string()).trim_end_matches(" Tried:")
                    )),
                )),
            }
        }
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

/// Ok if CANN loads and reports at least one device. Errors: the loader's message (what was
/// tried, `source set_env.sh`), or no device.
fn ascend_available() -> Result<()> {
    let report = crate::backend::ascend::devices()?;
    if report.device_count == 0 {
        return Err(Error::DeviceUnavailable(format!(
            "CANN loaded from {} but reports no Ascend device",
            report
                .libraries
                .first()
                .map_or("?".into(), |p| p.display().to_string())
        )));
    }
    Ok(())
}

/// Makes backends of one kind: the trainer needs one for training and one for each validation.
pub trait BackendFactory {
    /// The backend made.
    type Backend: Backend + 'static;
    /// A new backend. Errors: the device cannot start.
    fn create(&self) -> Result<Self::Backend>;

    /// The gradient all-reduce of a data-parallel job over `comm` on this device. The default
    /// stages the gradients through the host in fused buckets of
    /// [`crate::dist::bucket_bytes`] (25 MiB unless `SENET_BUCKET_CAP_MB` says otherwise) and
    /// all-reduces them with `comm`
    /// ([`HostStagedReducer`]); a device with its own collective library (Ascend: HCCL on the
    /// backend's stream) returns a reducer working on its buffers in place.
    /// Errors: the reducer cannot be set up.
    fn gradient_reducer(
        &self,
        comm: Arc<dyn Communicator>,
    ) -> Result<Box<dyn GradientReducer<Self::Backend>>> {
        Ok(Box::new(HostStagedReducer::new(
            comm,
            crate::dist::bucket_bytes()?,
        )?))
    }
}

/// [`BackendFactory`] of the CPU backend.
#[derive(Debug, Clone, Copy)]
pub struct CpuFactory {
    /// Threads (0 = one per core).
    pub threads: usize,
}

impl BackendFactory for CpuFactory {
    type Backend = CpuBackend;
    fn create(&self) -> Result<CpuBackend> {
        CpuBackend::new(self.threads)
    }
}

/// [`BackendFactory`] of the Ascend backend: each backend gets its own context and stream on
/// the same device.
#[derive(Debug, Clone, Copy)]
pub struct AscendFactory {
    /// `aclrtSetDevice` id.
    pub id: i32,
    /// Compute precision.
    pub precision: Precision,
    /// The float32 cube switches.
    pub cube_math: CubeMath,
}

impl BackendFactory for AscendFactory {
    type Backend = AscendBackend;
    fn create(&self) -> Result<AscendBackend> {
        AscendBackend::with_cube_math(self.id, self.precision, self.cube_math)
    }

    /// HCCL on the device buffers, overlapped with the backward ([`HcclReducer`], buckets of
    /// [`crate::dist::bucket_bytes`]): over `comm` itself when it is an HCCL
    /// communicator (a rank-table launch), else over a new one whose root info `comm` (MPI)
    /// carries from rank 0.
    fn gradient_reducer(
        &self,
        comm: Arc<dyn Communicator>,
    ) -> Result<Box<dyn GradientReducer<AscendBackend>>> {
        if comm.size() == 1 {
            return Ok(Box::new(HostStagedReducer::new(
                comm,
                crate::dist::bucket_bytes()?,
            )?));
        }
        let hccl: Arc<dyn Communicator> = if hccl_of(&*comm).is_some() {
            comm
        } else {
            Arc::new(HcclCommunicator::from_root_info(self.id, &*comm)?)
        };
        Ok(Box::new(HcclReducer::new(
            hccl,
            crate::dist::bucket_bytes()?,
        )?))
    }
}

/// A job generic over the backend, run by [`run_on`] with the resolved device's factory.
pub trait DeviceJob {
    /// What the job returns.
    type Output;
    /// Runs the job with backends from `factory`.
    fn run<F: BackendFactory>(self, factory: F) -> Result<Self::Output>;
}

/// Runs `job` on `device`. Errors: the job's, or the device cannot start.
pub fn run_on<J: DeviceJob>(device: Device, job: J) -> Result<J::Output> {
    match device {
        Device::Cpu { threads } => job.run(CpuFactory { threads }),
        Device::Ascend {
            id,
            precision,
            cube_math,
        } => job.run(AscendFactory {
            id,
            precision,
            cube_math,
        }),
    }
}

/// An eval-mode network on some device, behind one object type: what validate and predict use.
pub trait Forward: Send {
    /// Logits (N, classes) of a (N, 3, H, W) batch. Errors: a bad input shape, a device error.
    fn forward(&mut self, x: &Tensor) -> Result<Tensor>;
    /// Number of classes of the classifier.
    fn num_classes(&self) -> usize;
}

impl<B: Backend> Forward for InferenceNet<B> {
    fn forward(&mut self, x: &Tensor) -> Result<Tensor> {
        InferenceNet::forward(self, x)
    }
    fn num_classes(&self) -> usize {
        InferenceNet::num_classes(self)
    }
}

struct BuildInference<'a>(&'a SeNet);

impl DeviceJob for BuildInference<'_> {
    type Output = Box<dyn Forward>;
    fn run<F: BackendFactory>(self, factory: F) -> Result<Box<dyn Forward>> {
        Ok(Box::new(InferenceNet::new(self.0, factory.create()?)?))
    }
}

/// `net` in eval mode (BatchNorm folded) on `device`. Errors: the device cannot start, or the
/// parameters cannot be uploaded.
pub fn inference(net: &SeNet, device: Device) -> Result<Box<dyn Forward>> {
    run_on(device, BuildInference(net))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_cpu_ignores_the_recipe_target() {
        let (d, note) = resolve(
            &DeviceRequest::cpu(3),
            Some(DeviceTarget::Ascend),
            AmpLevel::O2,
        )
        .unwrap();
        assert_eq!(d, Device::Cpu { threads: 3 });
        assert!(note.is_none());
    }

    #[test]
    fn choices_parse() {
        assert_eq!(DeviceChoice::parse("Ascend").unwrap(), DeviceChoice::Ascend);
        assert_eq!(DeviceChoice::parse("cpu").unwrap(), DeviceChoice::Cpu);
        assert!(DeviceChoice::parse("gpu")
            .unwrap_err()
            .to_string()
            .contains("'gpu'"));
    }

    #[test]
    fn amp_o2_is_fp16() {
        assert_eq!(precision_of(AmpLevel::O2), Precision::Fp16);
        assert_eq!(precision_of(AmpLevel::O0), Precision::Fp32);
    }
}

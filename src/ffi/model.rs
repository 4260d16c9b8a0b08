//! Model handles: create, load weights, choose the device and threads, forward pass, free.
use super::args::{self, need, overlap, product};
use super::handle::{self, SenetModel};
use super::status::{guard, FfiError, SenetStatus};
use crate::backend::ascend::{CubeMath, Precision};
use crate::checkpoint::{self, LoadOptions};
use crate::config::{AmpLevel, DeviceTarget};
use crate::engine::device::{self, Device, DeviceChoice, DeviceRequest, Forward};
use crate::model::{Arch, SeNet};
use crate::Tensor;
use std::ffi::c_char;
use std::sync::{Mutex, MutexGuard};

/// Devices a model can run on (`senet_model_set_device`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SenetDevice {
    /// The CPU backend (the default).
    Cpu = 0,
    /// A Huawei Ascend NPU through CANN, loaded at run time (float32).
    Ascend = 1,
}

/// Upper bound of `senet_model_set_threads` (a guard against garbage values).
pub const SENET_MAX_THREADS: usize = 1024;

/// A model: its parameters, and the inference network built from them on first use.
pub(crate) struct Model {
    state: Mutex<ModelState>,
}

struct ModelState {
    net: SeNet,
    /// Whether a checkpoint has been loaded (the random init is never run).
    loaded: bool,
    /// CPU threads (0 = one per core).
    threads: usize,
    /// The Ascend device id when `senet_model_set_device` chose an NPU; None: the CPU.
    ascend: Option<i32>,
    /// Built lazily from `net` on the first forward pass; dropped when the weights, the
    /// device or the thread count change.
    inference: Option<Box<dyn Forward>>,
}

impl Model {
    fn lock(&self) -> MutexGuard<'_, ModelState> {
        // A panic during a forward pass may leave the inference buffers half written: drop the
        // inference network (it is rebuilt from the parameters, which only a successful load
        // replaces) and go on.
        self.state.lock().unwrap_or_else(|poisoned| {
            let mut state = poisoned.into_inner();
            state.inference = None;
            state
        })
    }
}

/// Creates a model of variant `variant` ("seresnet18", "seresnet34", "seresnet50",
/// "seresnext26_32x4d" or "seresnext50_32x4d", MindCV's names) with `num_classes` classes, and
/// writes its handle to `*out_model`. The model has no weights until `senet_model_load`; it runs
/// on the CPU with one thread per core until `senet_model_set_device` / `senet_model_set_threads`.
///
/// Ownership: the caller owns the new handle and frees it with `senet_model_free`; `variant`
/// is only read during the call. On failure `*out_model` is set to NULL (when `out_model` is not
/// NULL).
///
/// Thread-safety: safe from any thread.
///
/// Returns SENET_STATUS_OK, SENET_STATUS_NULL_POINTER, SENET_STATUS_INVALID_ARGUMENT
/// (`num_classes` 0 or more than 1,000,000, a name not UTF-8), SENET_STATUS_UNKNOWN_MODEL,
/// SENET_STATUS_OUT_OF_MEMORY (the parameters cannot be allocated: a 1,000,000-class
/// classifier alone is 8 GB), SENET_STATUS_INTERNAL.
///
/// # Safety
/// `variant` is NULL or a NUL-terminated string; `out_model` is NULL or points to writable
/// memory for one pointer.
#[no_mangle]
pub unsafe extern "C" fn senet_model_create(
    variant: *const c_char,
    num_classes: usize,
    out_model: *mut *mut SenetModel,
) -> SenetStatus {
    guard(|| {
        // SAFETY: `out_model` is NULL or writable by the contract; a NULL is reported here.
        unsafe { args::write_out(out_model, std::ptr::null_mut(), "out_model") }?;
        // SAFETY: `variant` is NULL or a NUL-terminated string by the contract.
        let name = unsafe { args::utf8(variant, "variant") }?;
        let arch = Arch::from_name(name)?;
        if num_classes == 0 {
            return Err(FfiError::invalid("num_classes must be at least 1"));
        }
        let net = SeNet::new(arch, num_classes, 0)?;
        let handle = handle::register(Model {
            state: Mutex::new(ModelState {
                net,
                loaded: false,
                threads: 0,
                ascend: None,
                inference: None,
            }),
        })?;
        // SAFETY: checked writable above.
        unsafe { args::write_out(out_model, handle, "out_model") }
    })
}

/// Loads the weights of a MindSpore `.ckpt` or a `.safetensors` file (chosen by extension) into
/// `model`, strictly: every parameter must be present with its exact name and shape (float
/// dtypes are converted to f32; training state such as `moments.*` is ignored). A timm
/// SE-ResNet/SE-ResNeXt state dict saved as safetensors (timm's names: `conv1.weight`,
/// `layer1.0.se.fc1.weight`, `fc.weight`, ...) is recognised and renamed, and the model then
/// runs timm's network: its stem max pool is timm's (resnet.py: padding 1 on every side;
/// senet.py: ceil mode), so `senet_model_forward` gives timm's logits at any input size. On
/// failure the model keeps its previous weights (and network).
///
/// Ownership: `path` is only read during the call.
///
/// Thread-safety: safe from any thread; serialised with the other calls on the same model
/// (a forward pass running on another thread finishes first).
///
/// The file is read whole into memory before it is parsed (never memory-mapped), so a file
/// truncated or rewritten while it loads is an error, not a SIGBUS; a FIFO, a device or a
/// directory is refused at once, never waited on. Every size read from the file is checked.
///
/// Returns SENET_STATUS_OK, SENET_STATUS_NULL_POINTER, SENET_STATUS_INVALID_HANDLE,
/// SENET_STATUS_INVALID_ARGUMENT (empty path), SENET_STATUS_IO (missing file, not a regular
/// file, changed while read), SENET_STATUS_FORMAT (not a checkpoint, unknown extension,
/// truncated or corrupt), SENET_STATUS_CHECKPOINT_MISMATCH (another variant or class count),
/// SENET_STATUS_OUT_OF_MEMORY, SENET_STATUS_INTERNAL.
///
/// # Safety
/// `path` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn senet_model_load(
    model: *mut SenetModel,
    path: *const c_char,
) -> SenetStatus {
    guard(|| {
        let m = handle::get::<Model>(model, "model")?;
        // SAFETY: `path` is NULL or a NUL-terminated string by the contract.
        let path = unsafe { args::path(path, "path") }?;
        let mut state = m.lock();
        // Load into a copy, so that a failure halfway leaves the weights as they were.
        let mut net = state.net.clone();
        checkpoint::load_model(&mut net, &path, &LoadOptions::default())?;
        state.net = net;
        state.loaded = true;
        state.inference = None;
        Ok(())
    })
}

/// Chooses the device `model` runs on: `device` is a `SenetDevice` value (SENET_DEVICE_CPU,
/// SENET_DEVICE_ASCEND) and `device_id` the device's index (0 for the CPU).
///
/// SENET_DEVICE_ASCEND loads CANN at run time (`libascendcl.so` and the aclnn libraries, found
/// through SENET_CANN_LIB, ASCEND_HOME_PATH / ASCEND_TOOLKIT_HOME, the standard install paths
/// or the dynamic linker) and computes in float32 on NPU `device_id` with torch_npu's default
/// cube modes (HFLOAT32 convolutions and FLOAT matrix products on A2/A3; the `senet` CLI's
/// `--conv_allow_hf32` / `--matmul_allow_hf32` are not exposed here); where CANN cannot be
/// loaded or reports no device it returns SENET_STATUS_BACKEND_UNAVAILABLE with the loader's
/// message in `senet_last_error()` and leaves the model where it was.
///
/// Thread-safety: safe from any thread; serialised with the other calls on the same model.
///
/// Returns SENET_STATUS_OK, SENET_STATUS_NULL_POINTER, SENET_STATUS_INVALID_HANDLE,
/// SENET_STATUS_INVALID_ARGUMENT (an unknown device, a negative id, a CPU id other than 0),
/// SENET_STATUS_BACKEND_UNAVAILABLE (CANN absent, or no device `device_id`),
/// SENET_STATUS_INTERNAL.
#[no_mangle]
pub extern "C" fn senet_model_set_device(
    model: *mut SenetModel,
    device: i32,
    device_id: i32,
) -> SenetStatus {
    guard(|| {
        let m = handle::get::<Model>(model, "model")?;
        if device_id < 0 {
            return Err(FfiError::invalid(format!(
                "device_id must be >= 0, got {device_id}"
            )));
        }
        let ascend = match device {
            d if d == SenetDevice::Cpu as i32 => {
                if device_id != 0 {
                    return Err(FfiError::invalid(format!(
                        "the CPU is device 0, got device_id {device_id}"
                    )));
                }
                None
            }
            d if d == SenetDevice::Ascend as i32 => {
                let req = DeviceRequest {
                    choice: DeviceChoice::Ascend,
                    device_id: Some(device_id),
                    threads: 0,
                    cube_math: CubeMath::default(),
                };
                device::resolve(&req, Some(DeviceTarget::Ascend), AmpLevel::O0)?;
                let count = crate::backend::ascend::devices()?.device_count;
                if device_id as u32 >= count {
                    return Err(FfiError::new(
                        SenetStatus::BackendUnavailable,
                        format!(
                            "Ascend device {device_id} does not exist ({count} device(s) visible)"
                        ),
                    ));
                }
                Some(device_id)
            }
            other => {
                return Err(FfiError::invalid(format!(
                    "unknown device {other} (SENET_DEVICE_CPU = 0, SENET_DEVICE_ASCEND = 1)"
                )))
            }
        };
        let mut state = m.lock();
        if state.ascend != ascend {
            state.ascend = ascend;
            state.inference = None;
        }
        Ok(())
    })
}

/// Sets the number of CPU threads of `model`'s forward passes: 0 = one per available core (the
/// default), at most SENET_MAX_THREADS. Takes effect at the next forward pass (the thread pool
/// is rebuilt then).
///
/// Thread-safety: safe from any thread; serialised with the other calls on the same model.
///
/// Returns SENET_STATUS_OK, SENET_STATUS_NULL_POINTER, SENET_STATUS_INVALID_HANDLE,
/// SENET_STATUS_INVALID_ARGUMENT (more than SENET_MAX_THREADS), SENET_STATUS_INTERNAL.
#[no_mangle]
pub extern "C" fn senet_model_set_threads(model: *mut SenetModel, threads: usize) -> SenetStatus {
    guard(|| {
        let m = handle::get::<Model>(model, "model")?;
        if threads > SENET_MAX_THREADS {
            return Err(FfiError::invalid(format!(
                "threads must be at most {SENET_MAX_THREADS}, got {threads}"
            )));
        }
        let mut state = m.lock();
        if state.threads != threads {
            state.threads = threads;
            state.inference = None;
        }
        Ok(())
    })
}

/// Writes the number of classes of `model` (the length of one row of logits) to
/// `*out_num_classes`.
///
/// Thread-safety: safe from any thread (waits for a forward pass running on the same model).
///
/// Returns SENET_STATUS_OK, SENET_STATUS_NULL_POINTER, SENET_STATUS_INVALID_HANDLE,
/// SENET_STATUS_INVALID_ARGUMENT (misaligned pointer), SENET_STATUS_INTERNAL.
///
/// # Safety
/// `out_num_classes` is NULL or points to writable memory for one `size_t`.
#[no_mangle]
pub unsafe extern "C" fn senet_model_num_classes(
    model: *const SenetModel,
    out_num_classes: *mut usize,
) -> SenetStatus {
    guard(|| {
        let m = handle::get::<Model>(model, "model")?;
        let classes = m.lock().net.num_classes;
        // SAFETY: `out_num_classes` is NULL or writable by the contract.
        unsafe { args::write_out(out_num_classes, classes, "out_num_classes") }
    })
}

/// Runs the network in eval mode on a batch of images and writes the logits (pre-softmax).
///
/// - `input`: `batch` images, NCHW float32 (row-major `[batch][3][height][width]`, height and
///   width at least 32; 224x224 for MindCV's ImageNet recipes, a recipe's `image_resize`
///   otherwise), RGB, normalized as the model's eval transform does (what
///   `senet_preprocess_file` writes at 224, `senet_preprocess_file_transform` at any size);
///   `input_len` is the number of floats the caller's buffer holds (at least
///   `batch * 3 * height * width`).
/// - `logits`: the caller's buffer of `logits_len` floats; receives `[batch][num_classes]`
///   row-major (`logits_len` at least `batch * num_classes`). It must not overlap `input`.
///
/// A model needs its weights (`senet_model_load`) first. The result is the same, value for
/// value, as `senet predict` computes with the same batches and threads.
///
/// Ownership: both buffers stay the caller's; nothing is kept after the call.
///
/// Thread-safety: safe from any thread. Calls on one model are serialised by a mutex around
/// its inference state (one forward pass at a time per model, which itself runs on the
/// model's thread pool); use one model per thread to run passes concurrently.
///
/// Returns SENET_STATUS_OK, SENET_STATUS_NULL_POINTER, SENET_STATUS_INVALID_HANDLE,
/// SENET_STATUS_INVALID_ARGUMENT (a zero batch, height or width below 32, overlapping or
/// misaligned buffers),
/// SENET_STATUS_BUFFER_TOO_SMALL (`input_len` or `logits_len`), SENET_STATUS_NOT_LOADED,
/// SENET_STATUS_DEVICE (on an NPU: CANN refused a call, e.g. out of device memory),
/// SENET_STATUS_BACKEND_UNAVAILABLE, SENET_STATUS_OUT_OF_MEMORY (the copy of the input),
/// SENET_STATUS_INTERNAL.
///
/// # Safety
/// `input` is NULL or points to `input_len` readable floats; `logits` is NULL or points to
/// `logits_len` writable floats; neither is modified by another thread during the call.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn senet_model_forward(
    model: *mut SenetModel,
    input: *const f32,
    input_len: usize,
    batch: usize,
    height: usize,
    width: usize,
    logits: *mut f32,
    logits_len: usize,
) -> SenetStatus {
    guard(|| {
        let m = handle::get::<Model>(model, "model")?;
        if batch == 0 || height == 0 || width == 0 {
            return Err(FfiError::invalid(format!(
                "batch, height and width must be positive, got {batch}, {height}, {width}"
            )));
        }
        let n_in = product(&[batch, 3, height, width], "input")?;
        need("input", input_len, n_in)?;
        let mut state = m.lock();
        let classes = state.net.num_classes;
        let n_out = product(&[batch, classes], "logits")?;
        need("logits", logits_len, n_out)?;
        if overlap(input, n_in, logits, n_out) {
            return Err(FfiError::invalid("input and logits overlap"));
        }
        // SAFETY: `n_in <= input_len` readable floats by the contract, not written meanwhile.
        let x = unsafe { args::slice(input, n_in, "input") }?;
        // SAFETY: `n_out <= logits_len` writable floats by the contract, disjoint from `x`
        // (checked above) and not accessed by anyone else during the call.
        let out = unsafe { args::slice_mut(logits, n_out, "logits") }?;
        if !state.loaded {
            return Err(FfiError::new(
                SenetStatus::NotLoaded,
                "the model has no weights: call senet_model_load first",
            ));
        }
        let mut copy = crate::mem::with_capacity(n_in, || {
            format!("a copy of the input batch ({n_in} floats)")
        })?;
        copy.extend_from_slice(x);
        let x = Tensor::from_vec(&[batch, 3, height, width], copy)?;
        let state = &mut *state;
        let inf = match &mut state.inference {
            Some(inf) => inf,
            slot => {
                let dev = match state.ascend {
                    Some(id) => Device::Ascend {
                        id,
                        precision: Precision::Fp32,
                        cube_math: CubeMath::default(),
                    },
                    None => Device::Cpu {
                        threads: state.threads,
                    },
                };
                slot.insert(device::inference(&state.net, dev)?)
            }
        };
        let y = inf.forward(&x)?;
        if y.data.len() != n_out {
            return Err(FfiError::new(
                SenetStatus::Internal,
                format!(
                    "forward produced {:?}, expected [{batch}, {classes}]",
                    y.shape
                ),
            ));
        }
        out.copy_from_slice(&y.data);
        Ok(())
    })
}

/// Frees `model`. NULL is a no-op (returns SENET_STATUS_OK). A forward pass still running on
/// another thread finishes first; the handle is invalid as soon as this returns.
///
/// Thread-safety: safe from any thread; the handle must not be used afterwards (a later use is
/// detected and returns SENET_STATUS_INVALID_HANDLE).
///
/// Returns SENET_STATUS_OK, SENET_STATUS_INVALID_HANDLE (freed twice, foreign pointer),
/// SENET_STATUS_INTERNAL.
#[no_mangle]
pub extern "C" fn senet_model_free(model: *mut SenetModel) -> SenetStatus {
    guard(|| handle::release::<Model>(model))
}

/*! Device selection: `auto | cpu | cuda[:N] | metal`.

Backends are behind cargo features; a device that was not compiled in is a clear error
([`Error::DeviceNotCompiled`]), never a panic.
*/

use crate::{Error, Result};
use candle_core::Device;

/// Parse a `--device` value into a candle [`Device`].
pub fn pick_device(spec: &str) -> Result<Device> {
    let spec = spec.trim().to_ascii_lowercase();
    match spec.as_str() {
        "cpu" => Ok(Device::Cpu),
        "auto" => {
            if cfg!(feature = "cuda") && candle_core::utils::cuda_is_available() {
                return cuda(0, "auto");
            }
            if cfg!(feature = "metal") && candle_core::utils::metal_is_available() {
                return metal("auto");
            }
            Ok(Device::Cpu)
        }
        "metal" => metal(&spec),
        s if s == "cuda" || s.starts_with("cuda:") => {
            let ordinal = match s.strip_prefix("cuda:") {
                Some(n) => n.parse::<usize>().map_err(|_| Error::Device {
                    device: spec.clone(),
                    msg: "expected cuda or cuda:N with N a GPU index".into(),
                })?,
                None => 0,
            };
            cuda(ordinal, &spec)
        }
        _ => Err(Error::Device { device: spec, msg: "expected one of auto, cpu, cuda[:N], metal".into() }),
    }
}

fn cuda(ordinal: usize, spec: &str) -> Result<Device> {
    if !cfg!(feature = "cuda") {
        return Err(Error::DeviceNotCompiled { device: spec.into(), feature: "cuda" });
    }
    Device::new_cuda(ordinal).map_err(|e| Error::Device { device: spec.into(), msg: format!("no usable GPU: {e}") })
}

fn metal(spec: &str) -> Result<Device> {
    if !cfg!(feature = "metal") {
        return Err(Error::DeviceNotCompiled { device: spec.into(), feature: "metal" });
    }
    Device::new_metal(0).map_err(|e| Error::Device { device: spec.into(), msg: format!("no usable Metal device: {e}") })
}

/// A short name for a device, for reports.
pub fn device_name(device: &Device) -> String {
    match device {
        Device::Cpu => "cpu".into(),
        Device::Cuda(_) => "cuda".into(),
        Device::Metal(_) => "metal".into(),
    }
}

//! Adapter choice: discrete > integrated > virtual > CPU by default; `VITGAN_BACKEND` / `VITGAN_ADAPTER`
//! (or [`GpuOptions`]) pick a backend and an adapter by name.

use crate::error::{Error, Result};

/// How to choose the adapter. Empty fields fall back to the environment, then to the default order.
#[derive(Clone, Debug, Default)]
pub struct GpuOptions {
    /// `vulkan`, `gl`, `metal`, `dx12` (comma-separated list allowed). Env: `VITGAN_BACKEND`.
    pub backend: Option<String>,
    /// Case-insensitive substring of the adapter name, e.g. `llvmpipe` or `rtx`. Env: `VITGAN_ADAPTER`.
    pub adapter: Option<String>,
}

impl GpuOptions {
    /// Fill unset fields from `VITGAN_BACKEND` and `VITGAN_ADAPTER`.
    pub fn with_env(mut self) -> Self {
        if self.backend.is_none() {
            self.backend = std::env::var("VITGAN_BACKEND")
                .ok()
                .filter(|s| !s.is_empty());
        }
        if self.adapter.is_none() {
            self.adapter = std::env::var("VITGAN_ADAPTER")
                .ok()
                .filter(|s| !s.is_empty());
        }
        self
    }
}

/// Parse a backend list such as `vulkan,gl`.
pub fn parse_backends(spec: &str) -> Result<wgpu::Backends> {
    let mut out = wgpu::Backends::empty();
    for part in spec.split(',').map(|s| s.trim().to_ascii_lowercase()) {
        out |= match part.as_str() {
            "vulkan" | "vk" => wgpu::Backends::VULKAN,
            "gl" | "opengl" | "gles" => wgpu::Backends::GL,
            "metal" | "mtl" => wgpu::Backends::METAL,
            "dx12" | "d3d12" => wgpu::Backends::DX12,
            "all" | "" => wgpu::Backends::all(),
            other => {
                return Err(Error::Config {
                    field: "backend".into(),
                    detail: format!("unknown backend `{other}`; use vulkan, gl, metal or dx12"),
                });
            }
        };
    }
    Ok(out)
}

/// Lower is preferred.
fn device_type_rank(t: wgpu::DeviceType) -> u32 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Cpu => 3,
        wgpu::DeviceType::Other => 4,
    }
}

fn backend_rank(b: wgpu::Backend) -> u32 {
    match b {
        wgpu::Backend::Vulkan | wgpu::Backend::Metal | wgpu::Backend::Dx12 => 0,
        _ => 1,
    }
}

/// Enumerate adapters and pick one according to `opts`.
pub fn choose_adapter(instance: &wgpu::Instance, opts: &GpuOptions) -> Result<wgpu::Adapter> {
    let backends = match &opts.backend {
        Some(b) => parse_backends(b)?,
        None => wgpu::Backends::all(),
    };
    let adapters = pollster::block_on(instance.enumerate_adapters(backends));
    let described: Vec<String> = adapters
        .iter()
        .map(|a| {
            let i = a.get_info();
            format!("`{}` ({:?}, {:?})", i.name, i.backend, i.device_type)
        })
        .collect();
    let mut candidates: Vec<wgpu::Adapter> = adapters
        .into_iter()
        .filter(|a| match &opts.adapter {
            Some(want) => a
                .get_info()
                .name
                .to_lowercase()
                .contains(&want.to_lowercase()),
            None => true,
        })
        .collect();
    candidates.sort_by_key(|a| {
        let i = a.get_info();
        (device_type_rank(i.device_type), backend_rank(i.backend))
    });
    candidates.into_iter().next().ok_or_else(|| {
        let help = "install a GPU driver with Vulkan, Metal or DX12 support, or Mesa's software Vulkan \
                    (`apt-get install mesa-vulkan-drivers libvulkan1` on Debian/Ubuntu)";
        if described.is_empty() {
            Error::NoAdapter(format!("no adapter found for backends {backends:?}; {help}"))
        } else {
            Error::NoAdapter(format!(
                "no adapter matches backend {:?} / name {:?}; available: {}",
                opts.backend,
                opts.adapter,
                described.join(", ")
            ))
        }
    })
}

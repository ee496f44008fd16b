//! Portability without the hardware: every shader module the launchers can dispatch — each
//! `shaders/*.wgsl` file and every generated variant (matmul tile/texture variants, the texture and
//! no-subgroup variants of attention, the texture variants of LayerNorm and of the memory-bound
//! families: elementwise, reduce, layout, Adam) — is validated with the capabilities of each
//! target and translated, entry point by entry point, with naga's own back ends, as wgpu does on
//! that platform: SPIR-V (Vulkan), MSL 2.4 (Metal), HLSL shader model 6.0 (DX12) and GLSL ES 3.10
//! (the GL backend). Override constants take their defaults (as a pipeline without constants does).
//!
//! A module that uses subgroup operations is not required on GL: wgpu's GL backend has no
//! subgroups, and the crate then dispatches the variants without them (`supports_subgroup_kernel`,
//! `attention::shader_for`), which must translate.

use naga::back::PipelineConstants;
use naga::back::pipeline_constants::process_overrides;
use naga::valid::{Capabilities, ValidationFlags, Validator};
use vitgan::ops::{adam, attention, elementwise, layer_norm, layout, matmul, reduce};

/// (name, source) of every module the launchers can build.
fn modules() -> Vec<(String, String)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let mut out: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("wgsl"))
        .map(|p| {
            let name = p.file_stem().unwrap().to_string_lossy().to_string();
            (name, std::fs::read_to_string(&p).unwrap())
        })
        .collect();
    for t in [
        matmul::TileConfig::GPU,
        matmul::TileConfig::CPU,
        matmul::TileConfig::CPU_REGISTERS,
    ] {
        for textures in [false, true] {
            let s = matmul::shader_variant(t, textures);
            out.push((s.name.to_string(), s.source.to_string()));
        }
    }
    for s in [
        attention::shader_with_textures(),
        attention::shader_without_subgroups(),
        layer_norm::shader_with_textures(),
        elementwise::shader_with_textures(),
        reduce::shader_with_textures(),
        layout::shader_with_textures(),
        adam::shader_with_textures(),
    ] {
        out.push((s.name.to_string(), s.source.to_string()));
    }
    out.sort();
    out
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Target {
    SpirV,
    Msl,
    Hlsl,
    Glsl,
}

impl Target {
    fn capabilities(self) -> Capabilities {
        match self {
            Target::SpirV => naga::back::spv::supported_capabilities(),
            Target::Msl => naga::back::msl::supported_capabilities(),
            Target::Hlsl => naga::back::hlsl::supported_capabilities(),
            // naga can write subgroup GLSL, but wgpu's GL backend offers no subgroups
            Target::Glsl => {
                naga::back::glsl::supported_capabilities()
                    - Capabilities::SUBGROUP
                    - Capabilities::SUBGROUP_BARRIER
            }
        }
    }

    /// Translates entry point `entry` of a validated, override-free module.
    fn write(
        self,
        module: &naga::Module,
        info: &naga::valid::ModuleInfo,
        entry: &str,
    ) -> Result<usize, String> {
        let stage = naga::ShaderStage::Compute;
        match self {
            Target::SpirV => {
                let options = naga::back::spv::Options::default();
                let pipeline = naga::back::spv::PipelineOptions {
                    shader_stage: stage,
                    entry_point: entry.to_string(),
                };
                naga::back::spv::write_vec(module, info, &options, Some(&pipeline))
                    .map(|w| w.len() * 4)
                    .map_err(|e| e.to_string())
            }
            Target::Msl => {
                let options = naga::back::msl::Options {
                    lang_version: (2, 4),
                    ..Default::default()
                };
                let pipeline = naga::back::msl::PipelineOptions {
                    entry_point: Some((stage, entry.to_string())),
                    ..Default::default()
                };
                naga::back::msl::write_string(module, info, &options, &pipeline)
                    .map(|(s, _)| s.len())
                    .map_err(|e| e.to_string())
            }
            Target::Hlsl => {
                let options = naga::back::hlsl::Options {
                    shader_model: naga::back::hlsl::ShaderModel::V6_0,
                    ..Default::default()
                };
                let pipeline = naga::back::hlsl::PipelineOptions {
                    entry_point: Some((stage, entry.to_string())),
                };
                let mut out = String::new();
                naga::back::hlsl::Writer::new(&mut out, &options, &pipeline)
                    .write(module, info, None)
                    .map(|_| out.len())
                    .map_err(|e| e.to_string())
            }
            Target::Glsl => {
                let options = naga::back::glsl::Options {
                    version: naga::back::glsl::Version::Embedded {
                        version: 310,
                        is_webgl: false,
                    },
                    ..Default::default()
                };
                let pipeline = naga::back::glsl::PipelineOptions {
                    shader_stage: stage,
                    entry_point: entry.to_string(),
                    multiview: None,
                };
                let mut out = String::new();
                let mut w = naga::back::glsl::Writer::new(
                    &mut out,
                    module,
                    info,
                    &options,
                    &pipeline,
                    naga::proc::BoundsCheckPolicies::default(),
                )
                .map_err(|e| e.to_string())?;
                w.write().map_err(|e| e.to_string())?;
                Ok(out.len())
            }
        }
    }
}

/// Whether the crate dispatches this module on an adapter without subgroups (else it uses the
/// module's no-subgroup variant, also in the list).
fn needs_subgroups(module: &naga::Module) -> bool {
    let caps = naga::back::glsl::supported_capabilities()
        - Capabilities::SUBGROUP
        - Capabilities::SUBGROUP_BARRIER;
    Validator::new(ValidationFlags::all(), caps)
        .validate(module)
        .is_err()
}

/// Storage buffers per shader stage that every wgpu adapter offers (WebGPU's default limit).
const DEFAULT_STORAGE_BUFFERS: usize = 8;

/// Entry points binding more than [`DEFAULT_STORAGE_BUFFERS`], whose launchers check the adapter's
/// `max_storage_buffers_per_shader_stage` first and use another kernel where it is lower.
const GATED_ON_STORAGE_BUFFERS: &[&str] = &["matmul_registers", "matmul_subgroup"];

/// (entry point, storage buffers it uses) for every entry point of `module`.
fn storage_buffers_per_entry_point(module: &naga::Module) -> Vec<(String, usize)> {
    let info = Validator::new(ValidationFlags::all(), Capabilities::all())
        .validate(module)
        .unwrap();
    module
        .entry_points
        .iter()
        .enumerate()
        .map(|(i, ep)| {
            let f = info.get_entry_point(i);
            let n = module
                .global_variables
                .iter()
                .filter(|(h, g)| {
                    matches!(g.space, naga::AddressSpace::Storage { .. }) && !f[*h].is_empty()
                })
                .count();
            (ep.name.clone(), n)
        })
        .collect()
}

#[test]
fn every_shader_translates_to_every_backend() {
    let mut failures = Vec::new();
    let mut table = Vec::new();
    for (name, src) in modules() {
        let module = naga::front::wgsl::parse_str(&src)
            .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(&src)));
        let subgroups = needs_subgroups(&module);
        let buffers = storage_buffers_per_entry_point(&module);
        let most = buffers.iter().map(|b| b.1).max().unwrap_or(0);
        if most > DEFAULT_STORAGE_BUFFERS {
            for (ep, n) in buffers.iter().filter(|b| b.1 > DEFAULT_STORAGE_BUFFERS) {
                if !GATED_ON_STORAGE_BUFFERS.contains(&ep.as_str()) {
                    failures.push(format!(
                        "{name}::{ep} binds {n} storage buffers, more than the {DEFAULT_STORAGE_BUFFERS} \
                         every adapter offers, and its launcher does not check the adapter's limit"
                    ));
                }
            }
        }
        let mut row = format!("{name:<45} ≤{most:>2} storage buffers");
        for target in [Target::SpirV, Target::Msl, Target::Hlsl, Target::Glsl] {
            if subgroups && target == Target::Glsl {
                row += "  GL: n/a (subgroups; no-subgroup variant used)";
                continue;
            }
            let info = match Validator::new(ValidationFlags::all(), target.capabilities())
                .validate(&module)
            {
                Ok(info) => info,
                Err(e) => {
                    failures.push(format!(
                        "{name} {target:?}: validation: {}",
                        e.emit_to_string(&src)
                    ));
                    continue;
                }
            };
            let mut bytes = 0;
            for ep in &module.entry_points {
                let resolved = process_overrides(
                    &module,
                    &info,
                    Some((naga::ShaderStage::Compute, &ep.name)),
                    &PipelineConstants::default(),
                );
                let (m, i) = match resolved {
                    Ok(r) => r,
                    Err(e) => {
                        failures.push(format!("{name}::{} {target:?}: overrides: {e}", ep.name));
                        continue;
                    }
                };
                match target.write(&m, &i, &ep.name) {
                    Ok(n) => bytes += n,
                    Err(e) => failures.push(format!("{name}::{} {target:?}: {e}", ep.name)),
                }
            }
            row += &format!(
                "  {target:?} {} eps {} KB",
                module.entry_points.len(),
                bytes / 1024
            );
        }
        table.push(row);
    }
    for row in &table {
        println!("{row}");
    }
    assert!(table.len() >= 20, "only {} modules found", table.len());
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

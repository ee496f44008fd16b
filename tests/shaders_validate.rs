//! Every WGSL file in shaders/ parses and validates with naga (the same front end wgpu uses).

#[test]
fn every_wgsl_file_validates() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("wgsl") {
            continue;
        }
        let src = std::fs::read_to_string(&path).unwrap();
        let module = naga::front::wgsl::parse_str(&src)
            .unwrap_or_else(|e| panic!("{}: {}", path.display(), e.emit_to_string(&src)));
        let mut validator = naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::all(),
        );
        validator
            .validate(&module)
            .unwrap_or_else(|e| panic!("{}: {}", path.display(), e.emit_to_string(&src)));
        assert!(
            !module.entry_points.is_empty(),
            "{} has no entry point",
            path.display()
        );
        checked += 1;
    }
    assert!(checked >= 1, "no shaders found in {}", dir.display());
}

/// Validate `src`; with `subgroups` false, without the subgroup capability (what an adapter without
/// subgroup operations accepts).
fn validate(name: &str, src: &str, subgroups: bool) {
    let module = naga::front::wgsl::parse_str(src)
        .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(src)));
    let mut caps = naga::valid::Capabilities::all();
    if !subgroups {
        caps.remove(naga::valid::Capabilities::SUBGROUP);
    }
    naga::valid::Validator::new(naga::valid::ValidationFlags::all(), caps)
        .validate(&module)
        .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(src)));
}

/// The sources the launchers generate (tile constants rewritten, subgroup kernels dropped, operand
/// reads swapped to textures) validate too.
#[test]
fn generated_shader_variants_validate() {
    use vitgan::ops::{attention, layer_norm, matmul};
    for t in [
        matmul::TileConfig::GPU,
        matmul::TileConfig::CPU,
        matmul::TileConfig::CPU_REGISTERS,
    ] {
        for textures in [false, true] {
            let shader = matmul::shader_variant(t, textures);
            assert_eq!(
                shader
                    .source
                    .contains("return textureLoad(a_tex, texel(i));"),
                textures,
                "{}: the operand reads must be swapped exactly in the texture variant",
                shader.name
            );
            // only the subgroup kernel's variant may use subgroup operations
            let subgroups = t.kernel == matmul::MatmulKernel::Subgroup;
            validate(shader.name, shader.source, subgroups);
        }
    }
    let with_textures = attention::shader_with_textures();
    assert!(
        with_textures
            .source
            .contains("textureLoad(q_tex, texel(i))")
    );
    validate(with_textures.name, with_textures.source, true);
    let ln = layer_norm::shader_with_textures();
    assert_eq!(ln.source.matches("textureLoad(").count(), 3, "{}", ln.name);
    validate(ln.name, ln.source, false);
    let without = attention::shader_without_subgroups();
    validate(without.name, without.source, false);
}

/// Kernels that read operand textures agree with the Rust side on the texture row width.
#[test]
fn operand_texture_width_matches_the_rust_constant() {
    let want = format!(
        "const TEXTURE_WIDTH: u32 = {}u;",
        vitgan::gpu::OPERAND_TEXTURE_WIDTH
    );
    for file in ["matmul", "attention", "layer_norm"] {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("shaders")
            .join(format!("{file}.wgsl"));
        let src = std::fs::read_to_string(&path).unwrap();
        assert!(src.contains(&want), "{} lacks `{want}`", path.display());
    }
}

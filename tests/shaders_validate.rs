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
    use vitgan::ops::{adam, attention, elementwise, layer_norm, layout, matmul, reduce};
    let w = vitgan::gpu::OPERAND_TEXTURE_WIDTH;
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
                    .contains(&format!("textureLoad(a_tex, vec2(i % {w}u, i / {w}u))")),
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
            .contains(&format!("textureLoad(q_tex, vec2(i % {w}u, i / {w}u))"))
    );
    validate(with_textures.name, with_textures.source, true);
    // every reader line of each texture variant swapped, and nothing else
    for (shader, readers) in [
        (layer_norm::shader_with_textures(), 8),
        (elementwise::shader_with_textures(), 5),
        (reduce::shader_with_textures(), 1),
        (layout::shader_with_textures(), 1),
        (adam::shader_with_textures(), 5),
    ] {
        let loads = shader.source.matches("textureLoad(").count();
        assert_eq!(loads, readers, "{}", shader.name);
        validate(shader.name, shader.source, false);
    }
    let without = attention::shader_without_subgroups();
    validate(without.name, without.source, false);
}

//! The environment variables that force a kernel choice (for A/B runs and sweeps), in one table:
//! each one's accepted values, read the same way everywhere ([`value`]: trimmed, lower-cased), and
//! checked when a [`super::Gpu`] opens ([`check_environment`]), so that a misspelt value is an
//! error naming the variable rather than silently running the default.

use crate::error::{Error, Result};

/// What a variable accepts.
#[derive(Clone, Copy, Debug)]
pub enum Accepts {
    /// One of these words.
    OneOf(&'static [&'static str]),
    /// This many positive integers separated by commas (a tile geometry).
    Integers(usize),
}

/// The kernel-choice variables and what each accepts. `VITGAN_BACKEND` and `VITGAN_ADAPTER` choose
/// the adapter and are checked where it is chosen; the benchmarks' `VITGAN_BENCH_*` are their own.
pub const OVERRIDES: &[(&str, Accepts)] = &[
    (
        "VITGAN_MATMUL_KERNEL",
        Accepts::OneOf(&["tiled", "registers", "subgroup"]),
    ),
    ("VITGAN_MATMUL_TILE", Accepts::Integers(5)),
    ("VITGAN_MATMUL_K_SLICES", Accepts::OneOf(&["off", "on"])),
    (
        "VITGAN_ATTENTION_KERNEL",
        Accepts::OneOf(&["tiled", "subgroup", "lanes", "composed"]),
    ),
    ("VITGAN_ATTENTION_TILE", Accepts::Integers(2)),
    (
        "VITGAN_SPECTRAL_NORM_KERNEL",
        Accepts::OneOf(&["lanes", "workgroup", "fused"]),
    ),
    ("VITGAN_INR", Accepts::OneOf(&["fused", "composed"])),
    ("VITGAN_PROFILE", Accepts::OneOf(&["0", "1"])),
    ("VITGAN_MATMUL_OPERANDS", OPERANDS),
    ("VITGAN_ATTENTION_OPERANDS", OPERANDS),
    ("VITGAN_ELEMENTWISE_OPERANDS", OPERANDS),
    ("VITGAN_REDUCE_OPERANDS", OPERANDS),
    ("VITGAN_LAYOUT_OPERANDS", OPERANDS),
    ("VITGAN_LAYER_NORM_OPERANDS", OPERANDS),
    ("VITGAN_ADAM_OPERANDS", OPERANDS),
];

const OPERANDS: Accepts = Accepts::OneOf(&["buffers", "textures"]);

/// The value of the variable `name`, trimmed and lower-cased; `None` when it is unset or blank.
pub fn value(name: &str) -> Option<String> {
    let v = std::env::var(name).ok()?;
    let v = v.trim().to_ascii_lowercase();
    (!v.is_empty()).then_some(v)
}

/// An error when `value` (as [`value`] reads it) is not what `accepts` allows.
pub fn check_value(name: &str, accepts: Accepts, value: &str) -> Result<()> {
    let ok = match accepts {
        Accepts::OneOf(words) => words.contains(&value),
        Accepts::Integers(n) => {
            let parts: Vec<_> = value.split(',').map(|p| p.trim().parse::<u32>()).collect();
            parts.len() == n && parts.iter().all(|p| matches!(p, Ok(x) if *x > 0))
        }
    };
    if ok {
        return Ok(());
    }
    let expected = match accepts {
        Accepts::OneOf(words) => format!("expected {}", words.join(", ")),
        Accepts::Integers(n) => format!("expected {n} positive integers separated by commas"),
    };
    Err(Error::Other(format!(
        "environment variable {name}=`{value}`: {expected}; unset it to choose automatically"
    )))
}

/// An error naming the first variable of [`OVERRIDES`] that is set to a value it does not accept.
pub fn check_environment() -> Result<()> {
    for &(name, accepts) in OVERRIDES {
        if let Some(v) = value(name) {
            check_value(name, accepts, &v)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accepts(name: &str) -> Accepts {
        OVERRIDES.iter().find(|(n, _)| *n == name).unwrap().1
    }

    #[test]
    fn listed_words_pass_and_others_are_refused_by_name() {
        let a = accepts("VITGAN_SPECTRAL_NORM_KERNEL");
        assert!(check_value("VITGAN_SPECTRAL_NORM_KERNEL", a, "lanes").is_ok());
        let e = check_value("VITGAN_SPECTRAL_NORM_KERNEL", a, "lane").unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("VITGAN_SPECTRAL_NORM_KERNEL"), "{msg}");
        assert!(
            msg.contains("`lane`") && msg.contains("lanes, workgroup"),
            "{msg}"
        );
    }

    #[test]
    fn tile_geometries_need_the_right_count_of_positive_integers() {
        let a = accepts("VITGAN_MATMUL_TILE");
        assert!(check_value("VITGAN_MATMUL_TILE", a, "8,8,4,4,8").is_ok());
        assert!(check_value("VITGAN_MATMUL_TILE", a, "8, 8, 4, 4, 8").is_ok());
        for bad in ["8,8,4,4", "8,8,4,4,0", "8,8,4,4,x", "8,8,4,4,8,8"] {
            assert!(check_value("VITGAN_MATMUL_TILE", a, bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn every_variable_read_in_the_crate_is_listed() {
        // the sources that read kernel-choice variables through `value`
        let sources = [
            include_str!("../ops/matmul.rs"),
            include_str!("../ops/attention.rs"),
            include_str!("../ops/spectral_norm.rs"),
            include_str!("../ops/mod.rs"),
            include_str!("../ops/elementwise.rs"),
            include_str!("../ops/reduce.rs"),
            include_str!("../ops/layout.rs"),
            include_str!("../ops/layer_norm.rs"),
            include_str!("../ops/adam.rs"),
            include_str!("../autodiff/attention.rs"),
            include_str!("../nn/mod.rs"),
            include_str!("mod.rs"),
        ];
        for src in sources {
            for (i, _) in src.match_indices("\"VITGAN_") {
                let name: String = src[i + 1..]
                    .chars()
                    .take_while(|c| c.is_ascii_uppercase() || *c == '_' || c.is_ascii_digit())
                    .collect();
                assert!(
                    OVERRIDES.iter().any(|(n, _)| *n == name),
                    "{name} is read but not in OVERRIDES"
                );
            }
        }
    }
}

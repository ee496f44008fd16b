//! What the example binaries (`train`, `generate`, `evaluate`) share on their command lines, which
//! they read with clap (derive): the device flags, and the value checks that run while the command
//! line is parsed, so that a bad value is refused before any work, naming the flag and the value.

use clap::builder::TypedValueParser as _;
use vitgan::GpuOptions;
use vitgan::data::Crop;

/// The adapter choice, on every binary.
#[derive(clap::Args, Clone, Debug, Default)]
#[command(next_help_heading = "Device")]
pub struct DeviceFlags {
    /// Pick the adapter whose name contains NAME (env VITGAN_ADAPTER)
    #[arg(long, value_name = "NAME")]
    pub adapter: Option<String>,
    /// vulkan | gl | metal | dx12 (env VITGAN_BACKEND)
    #[arg(long, value_name = "NAME")]
    pub backend: Option<String>,
}

impl DeviceFlags {
    pub fn options(&self) -> GpuOptions {
        GpuOptions {
            adapter: self.adapter.clone(),
            backend: self.backend.clone(),
        }
    }
}

/// `s` as a number that passes `ok`, else an error saying it must be `what`.
fn checked(s: &str, ok: impl Fn(f32) -> bool, what: &str) -> Result<f32, String> {
    match s.trim().parse::<f32>() {
        Ok(x) if ok(x) => Ok(x),
        Ok(_) => Err(format!("`{s}` must be {what}")),
        Err(_) => Err(format!("`{s}` is not a valid number")),
    }
}

/// A finite number > 0 (learning rates, multipliers, gains).
#[allow(dead_code)] // the trainer's
pub fn positive(s: &str) -> Result<f32, String> {
    checked(s, |x| x.is_finite() && x > 0.0, "a finite number > 0")
}

/// A finite number ≥ 0 (regulariser weights).
#[allow(dead_code)] // the trainer's
pub fn non_negative(s: &str) -> Result<f32, String> {
    checked(s, |x| x.is_finite() && x >= 0.0, "a finite number >= 0")
}

/// A probability, in [0, 1].
#[allow(dead_code)] // the trainer's
pub fn probability(s: &str) -> Result<f32, String> {
    checked(s, |x| (0.0..=1.0).contains(&x), "in [0, 1]")
}

/// A decay or momentum, in [0, 1).
#[allow(dead_code)] // the trainer's
pub fn below_one(s: &str) -> Result<f32, String> {
    checked(s, |x| (0.0..1.0).contains(&x), "in [0, 1)")
}

/// `--raw`: G's current weights; else their EMA.
#[allow(dead_code)] // generate's and evaluate's
pub fn weights(raw: bool) -> vitgan::train::generate::Weights {
    use vitgan::train::generate::Weights;
    if raw { Weights::Current } else { Weights::Ema }
}

/// `center:S` or `short-side`.
#[allow(dead_code)] // train's and evaluate's
pub fn crop(s: &str) -> Result<Crop, String> {
    Crop::parse(s).map_err(|e| match e {
        vitgan::Error::Config { detail, .. } => detail,
        other => other.to_string(),
    })
}

/// One of a switch's names (`(name, value)` in `table`), as that value; clap lists the names in
/// `--help` and in the error for any other.
#[allow(dead_code)] // the trainer's
pub fn switch<T: Copy + Send + Sync + 'static>(
    table: &'static [(&'static str, T)],
) -> impl clap::builder::TypedValueParser<Value = T> {
    clap::builder::PossibleValuesParser::new(table.iter().map(|c| c.0)).map(move |name| {
        table
            .iter()
            .find(|c| c.0 == name)
            .map_or(table[0].1, |c| c.1)
    })
}

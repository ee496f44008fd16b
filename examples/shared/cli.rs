//! The flag reading shared by the example binaries (`train`, `generate`, `evaluate`): flags and
//! their values in order, with errors that name the flag.

use vitgan::{Error, Result};

/// The command line after the program name (or any list of flags and values).
pub struct Flags(std::vec::IntoIter<String>);

impl Flags {
    #[allow(dead_code)] // generate's and evaluate's; the trainer reads its list itself
    pub fn from_env() -> Flags {
        Flags::from_list(std::env::args().skip(1).collect())
    }

    /// Flags and values in order, e.g. the settings of a `--config` file.
    #[allow(dead_code)] // the trainer's; generate and evaluate share the file
    pub fn from_list(list: Vec<String>) -> Flags {
        Flags(list.into_iter())
    }

    /// The next flag, `None` at the end.
    pub fn next_flag(&mut self) -> Option<String> {
        self.0.next()
    }

    /// The value following `flag`.
    pub fn value(&mut self, flag: &str) -> Result<String> {
        self.0.next().ok_or_else(|| Error::Config {
            field: flag.into(),
            detail: "needs a value".into(),
        })
    }

    /// The value following `flag`, parsed as a number.
    pub fn number<T: std::str::FromStr>(&mut self, flag: &str) -> Result<T> {
        let v = self.value(flag)?;
        v.parse().map_err(|_| Error::Config {
            field: flag.into(),
            detail: format!("`{v}` is not a valid number"),
        })
    }
}

/// The error for a flag no binary knows.
pub fn unknown(flag: &str) -> Error {
    Error::Config {
        field: flag.into(),
        detail: "unknown option; see --help".into(),
    }
}

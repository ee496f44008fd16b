//! Checkpoints as safetensors files (readable by PyTorch's `safetensors.torch.load_file`).
//!
//! Layout (the safetensors format): an 8-byte little-endian header length `n`, `n` bytes of JSON
//! header (`{"name": {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}, ...,
//! "__metadata__": {"key": "value", ...}}`), then the tensor bytes, little-endian, row-major.
//! Here every tensor is F32 and metadata is a string map; keys starting with `config.` describe the
//! run's configuration and must match to resume ([`Checkpoint::check_config`]).

use super::{commit_temp_file, create_parent_dir, temp_path_for};
use crate::error::{Error, Result};
use safetensors::tensor::{Dtype, SafeTensorError, SafeTensors, View};
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

/// Metadata keys with this prefix are the configuration a resumed run must share.
pub const CONFIG_PREFIX: &str = "config.";

/// Named F32 tensors plus string metadata.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Checkpoint {
    /// `(name, shape, values)`; `values.len()` is the product of `shape`.
    pub tensors: Vec<(String, Vec<usize>, Vec<f32>)>,
    /// Free-form string metadata (`config.*` keys are checked on resume).
    pub metadata: BTreeMap<String, String>,
}

/// A scalar type stored in safetensors files (f32 checkpoints, f64 FID statistics).
pub(crate) trait Scalar: bytemuck::Pod {
    const DTYPE: Dtype;
    /// Little-endian bytes of one value.
    fn le_bytes(self) -> Vec<u8>;
}

impl Scalar for f32 {
    const DTYPE: Dtype = Dtype::F32;
    fn le_bytes(self) -> Vec<u8> {
        self.to_le_bytes().to_vec()
    }
}

impl Scalar for f64 {
    const DTYPE: Dtype = Dtype::F64;
    fn le_bytes(self) -> Vec<u8> {
        self.to_le_bytes().to_vec()
    }
}

/// One tensor, as the `safetensors` crate wants to see it.
pub(crate) struct TensorView<'a, T> {
    pub shape: &'a [usize],
    pub values: &'a [T],
}

impl<T: Scalar> View for TensorView<'_, T> {
    fn dtype(&self) -> Dtype {
        T::DTYPE
    }

    fn shape(&self) -> &[usize] {
        self.shape
    }

    fn data(&self) -> Cow<'_, [u8]> {
        if cfg!(target_endian = "little") {
            Cow::Borrowed(bytemuck::cast_slice(self.values))
        } else {
            Cow::Owned(self.values.iter().flat_map(|v| v.le_bytes()).collect())
        }
    }

    fn data_len(&self) -> usize {
        std::mem::size_of_val(self.values)
    }
}

impl Checkpoint {
    /// The shape and values of tensor `name`, if present.
    pub fn tensor(&self, name: &str) -> Option<(&[usize], &[f32])> {
        self.tensors
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, shape, values)| (shape.as_slice(), values.as_slice()))
    }

    /// Writes the checkpoint to `path` atomically: `<path>.tmp` in the same directory (created if
    /// missing) is written, fsynced, and renamed over `path`.
    ///
    /// Errors: a tensor whose value count differs from its shape's product, or a repeated name.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut names = BTreeSet::new();
        for (name, shape, values) in &self.tensors {
            if !names.insert(name.as_str()) {
                return Err(Error::Other(format!(
                    "checkpoint for {}: tensor name `{name}` appears twice",
                    path.display()
                )));
            }
            let expected: usize = shape.iter().product();
            if expected != values.len() {
                return Err(Error::shape(
                    "Checkpoint::save",
                    format!(
                        "tensor `{name}` has shape {shape:?} ({expected} values) but holds {}",
                        values.len()
                    ),
                ));
            }
        }
        let views = self
            .tensors
            .iter()
            .map(|(name, shape, values)| (name.as_str(), TensorView { shape, values }));
        let metadata: HashMap<String, String> = self
            .metadata
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let metadata = (!metadata.is_empty()).then_some(metadata);

        create_parent_dir(path)?;
        let tmp = temp_path_for(path);
        if let Err(e) = safetensors::serialize_to_file(views, &metadata, &tmp) {
            let _ = std::fs::remove_file(&tmp);
            return Err(match e {
                SafeTensorError::IoError(source) => Error::Io {
                    path: tmp.display().to_string(),
                    source,
                },
                other => Error::Other(format!(
                    "cannot write checkpoint {}: {other}",
                    path.display()
                )),
            });
        }
        commit_temp_file(&tmp, path)
    }

    /// Reads a checkpoint written by [`Checkpoint::save`] (or any safetensors file of F32 tensors).
    /// Tensors come back sorted by name.
    ///
    /// Errors: a truncated or corrupt file is an [`Error::Data`] naming the file (offset 0 for the
    /// length field, 8 for the JSON header, the file length when the data ends early); a tensor of
    /// another dtype is an [`Error::Data`] naming the tensor, at its data offset.
    pub fn load(path: &Path) -> Result<Checkpoint> {
        let name = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|source| Error::Io {
            path: name.clone(),
            source,
        })?;
        let (header_len, header) = SafeTensors::read_metadata(&bytes).map_err(|e| {
            let (offset, detail) = describe_load_error(&e, bytes.len());
            Error::Data {
                path: name.clone(),
                offset,
                detail,
            }
        })?;
        let data_start = 8 + header_len;
        let mut tensors = Vec::new();
        for (tensor_name, info) in header.tensors() {
            let (begin, end) = info.data_offsets;
            if info.dtype != Dtype::F32 {
                return Err(Error::Data {
                    path: name,
                    offset: (data_start + begin) as u64,
                    detail: format!(
                        "tensor `{tensor_name}` has dtype {:?}; only F32 checkpoints are supported",
                        info.dtype
                    ),
                });
            }
            let values = bytes[data_start + begin..data_start + end]
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            tensors.push((tensor_name, info.shape.clone(), values));
        }
        tensors.sort_by(|a, b| a.0.cmp(&b.0));
        let metadata = header
            .metadata()
            .as_ref()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        Ok(Checkpoint { tensors, metadata })
    }

    /// Checks that this checkpoint was written under the configuration `expected`.
    ///
    /// Compares, in key order, every key of `expected` and every saved `config.*` key; a key
    /// missing on either side counts as a mismatch. The first mismatch is an [`Error::Config`] whose
    /// field is that key.
    pub fn check_config(&self, expected: &BTreeMap<String, String>) -> Result<()> {
        let keys: BTreeSet<&String> = expected
            .keys()
            .chain(
                self.metadata
                    .keys()
                    .filter(|k| k.starts_with(CONFIG_PREFIX)),
            )
            .collect();
        for key in keys {
            let saved = self.metadata.get(key);
            let wanted = expected.get(key);
            if saved != wanted {
                let show =
                    |v: Option<&String>| v.map_or("no value".to_string(), |v| format!("`{v}`"));
                return Err(Error::Config {
                    field: key.clone(),
                    detail: format!(
                        "checkpoint has {}, this run has {}; pass the same --preset/options or \
                         start without --resume",
                        show(saved),
                        show(wanted)
                    ),
                });
            }
        }
        Ok(())
    }
}

/// Byte offset and explanation for a safetensors parse failure of a `file_len`-byte file.
fn describe_load_error(e: &SafeTensorError, file_len: usize) -> (u64, String) {
    match e {
        SafeTensorError::HeaderTooSmall => (
            0,
            format!("the file is {file_len} bytes, shorter than the 8-byte header length field"),
        ),
        SafeTensorError::HeaderTooLarge | SafeTensorError::InvalidHeaderLength => (
            0,
            format!(
                "the header length field points past the end of the {file_len}-byte file; the \
                 file is truncated or not a safetensors file"
            ),
        ),
        SafeTensorError::MetadataIncompleteBuffer => (
            file_len as u64,
            "the tensor data does not end where the file ends; the file is truncated or was not \
             completely written"
                .into(),
        ),
        other => (
            8,
            format!("the JSON header is invalid ({other}); not a safetensors checkpoint"),
        ),
    }
}

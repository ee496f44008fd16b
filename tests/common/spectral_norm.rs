//! f64 references for the spectral_norm family (in progress)

//! f64 references for the layer_norm family (in progress)

//! f64 references for the attention family (in progress)

//! f64 references for the inr family (in progress)

//! A kernel forced through `VITGAN_MATMUL_KERNEL` / `VITGAN_ATTENTION_KERNEL` that cannot run (or
//! an unknown name) is an error naming the variable, never a silent fallback to another kernel.
//! One test: the variables are process-wide.
mod common;
use common::*;
use vitgan::ops::attention::{AttentionKind, attention_forward};
use vitgan::ops::matmul::{matmul, supports_subgroup_kernel};

fn with_var<T>(var: &str, value: &str, f: impl FnOnce() -> T) -> T {
    unsafe { std::env::set_var(var, value) };
    let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    unsafe { std::env::remove_var(var) };
    out.unwrap_or_else(|p| std::panic::resume_unwind(p))
}

#[test]
fn forcing_a_kernel_that_cannot_run_is_an_error() {
    let a = upload(&random(&mut rng(1), 12, -1.0, 1.0), &[3, 4]);
    let b = upload(&random(&mut rng(2), 20, -1.0, 1.0), &[4, 5]);
    let err = with_var("VITGAN_MATMUL_KERNEL", "blocked", || matmul(&a, &b).err());
    assert!(
        err.is_some_and(|e| e.to_string().contains("VITGAN_MATMUL_KERNEL")),
        "an unknown matmul kernel name must be refused"
    );
    let forced = with_var("VITGAN_MATMUL_KERNEL", "subgroup", || matmul(&a, &b));
    assert_eq!(forced.is_ok(), supports_subgroup_kernel(&gpu()));
    for kernel in ["tiled", "registers"] {
        let c = with_var("VITGAN_MATMUL_KERNEL", kernel, || matmul(&a, &b));
        let got = c.unwrap().to_vec().unwrap();
        let want = matmul_ref(
            &to_f64(&a.to_vec().unwrap()),
            &to_f64(&b.to_vec().unwrap()),
            1,
            1,
            3,
            4,
            5,
            false,
            false,
        );
        assert_close(&got, &want, 1e-5, 1e-5, kernel);
    }

    // the subgroup attention kernels need head width 64: forcing them at 16 is refused
    let q = upload(&random(&mut rng(3), 2 * 9 * 16, -1.0, 1.0), &[1, 2, 9, 16]);
    let r = with_var("VITGAN_ATTENTION_KERNEL", "subgroup", || {
        attention_forward(&q, &q, &q, AttentionKind::L2).err()
    });
    assert!(
        r.is_some_and(|e| e.to_string().contains("VITGAN_ATTENTION_KERNEL")),
        "subgroup attention at head width 16 must be refused"
    );
    let ok = with_var("VITGAN_ATTENTION_KERNEL", "tiled", || {
        attention_forward(&q, &q, &q, AttentionKind::L2)
    });
    assert!(ok.is_ok());
}

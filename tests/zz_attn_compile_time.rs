mod common;
use common::*;
use vitgan::ops::attention::*;
#[test]
fn compile_time() {
    for dh in [17usize, 64, 128] {
        for kind in [AttentionKind::Dot, AttentionKind::L2] {
            let s = [1, 1, 5, dh];
            let x = upload(&vec![0.1; 5 * dh], &s);
            let t = std::time::Instant::now();
            let (o, l) = attention_forward(&x, &x, &x, kind).unwrap();
            gpu().sync().unwrap();
            let f = t.elapsed().as_secs_f64();
            let t = std::time::Instant::now();
            attention_backward(&x, &x, &x, &o, &l, &x, kind).unwrap();
            gpu().sync().unwrap();
            println!(
                "Dh {dh} {kind:?}: forward {f:.2} s, backward {:.2} s",
                t.elapsed().as_secs_f64()
            );
        }
    }
}

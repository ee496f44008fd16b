// scratch (not committed): time layout::to_operand_texture
use std::time::Instant;
use vitgan::ops::layout::to_operand_texture;
use vitgan::{Gpu, Tensor};
fn main() -> vitgan::Result<()> {
    let gpu = Gpu::default_adapter()?;
    for n in [2080 * 384, 8320 * 384, 384 * 1152, 8320 * 1536] {
        let data: Vec<f32> = (0..n).map(|i| i as f32).collect();
        let x = Tensor::from_slice(&gpu, &data, &[n])?;
        to_operand_texture(&x, 0)?;
        gpu.sync()?;
        let reps = 50;
        let t = Instant::now();
        for _ in 0..reps {
            to_operand_texture(&x, 0)?;
        }
        gpu.sync()?;
        let ms = t.elapsed().as_secs_f64() * 1e3 / reps as f64;
        println!(
            "{n:>10} floats: {ms:.3} ms  {:.2} GB/s",
            8.0 * n as f64 / ms / 1e6
        );
    }
    Ok(())
}

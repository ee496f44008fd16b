//! The GPU context: device and queue, pipeline cache, buffer pool, command batching, readback, timing.
//!
//! Every kernel launch goes through [`Gpu::dispatch`]: the pipeline is compiled once per
//! (shader, entry point, specialisation constants, binding layout) and cached; the launch is recorded,
//! not submitted. Recorded work is submitted in one command buffer by [`Gpu::flush`], which readback,
//! uploads and the uniform arena filling up all trigger.

mod adapter;
pub mod overrides;
pub mod pool;

pub use adapter::{GpuOptions, choose_adapter, parse_backends};
pub use pool::{PoolStats, PooledBuffer};

use crate::error::{Error, Result};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::{Arc, Mutex};

/// A WGSL source file compiled into the binary.
pub struct Shader {
    /// File stem, e.g. `matmul`.
    pub name: &'static str,
    /// WGSL source.
    pub source: &'static str,
}

/// How a kernel uses a storage binding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    /// `var<storage, read>`.
    Read,
    /// `var<storage, read_write>`.
    ReadWrite,
}

/// How a kernel uses a storage-texture binding (always `rgba32float`, 2-D).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TextureAccess {
    /// `texture_storage_2d<rgba32float, read>`.
    ReadOnly,
    /// `texture_storage_2d<rgba32float, write>`.
    WriteOnly,
}

/// Width in texels of the operand textures of [`Gpu::operand_texture`]: vec4 `i` of an operand is
/// texel `(i % OPERAND_TEXTURE_WIDTH, i / OPERAND_TEXTURE_WIDTH)`.
pub const OPERAND_TEXTURE_WIDTH: u32 = 1024;

/// Bytes reserved per dispatch in the uniform arena (≥ any adapter's uniform offset alignment).
const UNIFORM_SLOT: u64 = 256;
/// Dispatches recorded before the arena forces a submit.
const ARENA_SLOTS: u64 = 2048;

enum Command {
    Dispatch {
        pipeline: wgpu::ComputePipeline,
        bind_group: wgpu::BindGroup,
        groups: [u32; 3],
    },
    Copy {
        src: wgpu::Buffer,
        src_offset: u64,
        dst: wgpu::Buffer,
        dst_offset: u64,
        bytes: u64,
    },
    Clear {
        dst: wgpu::Buffer,
        bytes: u64,
    },
    /// The first `texels` vec4s of `src` into `dst`, row after row of OPERAND_TEXTURE_WIDTH texels.
    CopyToTexture {
        src: wgpu::Buffer,
        dst: wgpu::Texture,
        texels: u32,
    },
}

#[derive(Hash, PartialEq, Eq, Clone)]
struct PipelineKey {
    shader: &'static str,
    entry: &'static str,
    constants: Vec<(&'static str, u64)>,
    bindings: Vec<Access>,
    textures: Vec<(u32, TextureAccess)>,
}

struct Timing {
    query_set: wgpu::QuerySet,
    resolve: wgpu::Buffer,
}

pub(crate) struct Inner {
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    info: wgpu::AdapterInfo,
    limits: wgpu::Limits,
    features: wgpu::Features,
    modules: RefCell<HashMap<&'static str, wgpu::ShaderModule>>,
    pipelines: RefCell<HashMap<PipelineKey, (wgpu::ComputePipeline, wgpu::BindGroupLayout)>>,
    /// Operand textures by slot, with their height in rows: see [`Gpu::operand_texture`].
    operand_textures: RefCell<HashMap<u8, (u32, wgpu::Texture, wgpu::TextureView)>>,
    pub(crate) pool: Rc<RefCell<pool::Pool>>,
    pending: RefCell<Vec<Command>>,
    arena: wgpu::Buffer,
    arena_bytes: RefCell<Vec<u8>>,
    timing: Option<Timing>,
    timing_armed: Cell<bool>,
    errors: Arc<Mutex<Vec<String>>>,
    submits: Cell<u64>,
    dispatches: Cell<u64>,
    uploaded_bytes: Cell<u64>,
    /// `VITGAN_PROFILE=1`: every dispatch is submitted and waited for, and its wall time accumulated.
    profile: Option<RefCell<HashMap<String, (u64, f64)>>>,
}

/// Shared handle to the GPU context (cheap to clone).
#[derive(Clone)]
pub struct Gpu(pub(crate) Rc<Inner>);

impl Gpu {
    /// Open the adapter chosen by `opts` (then `VITGAN_BACKEND` / `VITGAN_ADAPTER`, then the default order).
    pub fn new(opts: GpuOptions) -> Result<Gpu> {
        let opts = opts.with_env();
        overrides::check_environment()?;
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
        desc.backends = match &opts.backend {
            Some(b) => parse_backends(b)?,
            None => wgpu::Backends::all(),
        };
        let instance = wgpu::Instance::new(desc);
        let adapter = choose_adapter(&instance, &opts)?;
        let info = adapter.get_info();
        let limits = adapter.limits();
        let wanted =
            wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::SUBGROUP | wgpu::Features::SHADER_F16;
        let features = adapter.features() & wanted;
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("vitgan"),
            required_features: features,
            required_limits: limits.clone(),
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        }))
        .map_err(|e| Error::Device(format!("could not open `{}`: {e}", info.name)))?;
        let errors: Arc<Mutex<Vec<String>>> = Arc::default();
        let sink = errors.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            sink.lock().unwrap().push(e.to_string());
        }));
        let arena = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("uniform arena"),
            size: UNIFORM_SLOT * ARENA_SLOTS,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let timing = features
            .contains(wgpu::Features::TIMESTAMP_QUERY)
            .then(|| Timing {
                query_set: device.create_query_set(&wgpu::QuerySetDescriptor {
                    label: Some("timing"),
                    ty: wgpu::QueryType::Timestamp,
                    count: 2,
                }),
                resolve: device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("timing resolve"),
                    size: 16,
                    usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                    mapped_at_creation: false,
                }),
            });
        Ok(Gpu(Rc::new(Inner {
            device,
            queue,
            info,
            limits,
            features,
            modules: RefCell::default(),
            pipelines: RefCell::default(),
            operand_textures: RefCell::default(),
            pool: Rc::default(),
            pending: RefCell::default(),
            arena,
            arena_bytes: RefCell::new(Vec::with_capacity((UNIFORM_SLOT * ARENA_SLOTS) as usize)),
            timing,
            timing_armed: Cell::new(false),
            errors,
            submits: Cell::new(0),
            dispatches: Cell::new(0),
            uploaded_bytes: Cell::new(0),
            profile: (overrides::value("VITGAN_PROFILE").as_deref() == Some("1"))
                .then(RefCell::default),
        })))
    }

    /// Default adapter choice (environment variables honoured).
    pub fn default_adapter() -> Result<Gpu> {
        Gpu::new(GpuOptions::default())
    }

    /// Adapter name, backend and type.
    pub fn info(&self) -> &wgpu::AdapterInfo {
        &self.0.info
    }
    /// One line describing the adapter, for logs and benchmarks.
    pub fn describe(&self) -> String {
        let i = &self.0.info;
        format!(
            "{} ({:?}, {:?}, driver {})",
            i.name, i.backend, i.device_type, i.driver_info
        )
    }
    /// The limits requested from the adapter (its own, not WebGPU's defaults).
    pub fn limits(&self) -> &wgpu::Limits {
        &self.0.limits
    }
    /// Optional features that were found and enabled.
    pub fn features(&self) -> wgpu::Features {
        self.0.features
    }
    /// Whether the adapter is a CPU implementation (lavapipe, llvmpipe).
    pub fn is_cpu(&self) -> bool {
        self.0.info.device_type == wgpu::DeviceType::Cpu
    }
    /// Whether GPU timestamps are available.
    pub fn has_timestamps(&self) -> bool {
        self.0.timing.is_some()
    }
    /// Buffer pool statistics.
    pub fn pool_stats(&self) -> PoolStats {
        self.0.pool.borrow().stats
    }
    /// Number of queue submissions so far.
    pub fn submit_count(&self) -> u64 {
        self.0.submits.get()
    }
    /// Number of compute dispatches recorded so far.
    pub fn dispatch_count(&self) -> u64 {
        self.0.dispatches.get()
    }
    /// Bytes of host data written to GPU buffers so far through [`Gpu::write`] (tensor uploads; the
    /// kernels' small parameter blocks travel in the uniform arena and are not counted).
    pub fn uploaded_bytes(&self) -> u64 {
        self.0.uploaded_bytes.get()
    }
    /// Release the pool's free buffers back to the device.
    pub fn trim_pool(&self) {
        pool::trim(&self.0.pool);
    }

    /// Largest storage buffer one binding may hold on this adapter.
    fn buffer_limit(&self) -> u64 {
        self.0
            .limits
            .max_storage_buffer_binding_size
            .min(self.0.limits.max_buffer_size)
    }

    /// Whether a tensor of `bytes` bytes can be allocated ([`Gpu::alloc`] rounds up to the pool's size
    /// class, which must fit one binding).
    pub fn fits_one_buffer(&self, bytes: u64) -> bool {
        pool::size_class(bytes) <= self.buffer_limit()
    }

    /// Borrow a storage buffer of at least `bytes` bytes from the pool.
    pub fn alloc(&self, bytes: u64, what: &str) -> Result<PooledBuffer> {
        let limit = self.buffer_limit();
        if !self.fits_one_buffer(bytes) {
            return Err(Error::BufferTooLarge {
                bytes,
                limit,
                what: what.to_string(),
            });
        }
        Ok(pool::acquire(&self.0.pool, &self.0.device, bytes))
    }

    fn module(&self, shader: &'static Shader) -> wgpu::ShaderModule {
        self.0
            .modules
            .borrow_mut()
            .entry(shader.name)
            .or_insert_with(|| {
                self.0
                    .device
                    .create_shader_module(wgpu::ShaderModuleDescriptor {
                        label: Some(shader.name),
                        source: wgpu::ShaderSource::Wgsl(shader.source.into()),
                    })
            })
            .clone()
    }

    fn pipeline(
        &self,
        key: &PipelineKey,
        shader: &'static Shader,
    ) -> (wgpu::ComputePipeline, wgpu::BindGroupLayout) {
        if let Some(p) = self.0.pipelines.borrow().get(key) {
            return p.clone();
        }
        let module = self.module(shader);
        let mut entries = vec![wgpu::BindGroupLayoutEntry {
            binding: 0,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Uniform,
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            count: None,
        }];
        for (i, a) in key.bindings.iter().enumerate() {
            entries.push(wgpu::BindGroupLayoutEntry {
                binding: i as u32 + 1,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Storage {
                        read_only: *a == Access::Read,
                    },
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
                count: None,
            });
        }
        for (binding, a) in &key.textures {
            entries.push(wgpu::BindGroupLayoutEntry {
                binding: *binding,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::StorageTexture {
                    access: match a {
                        TextureAccess::ReadOnly => wgpu::StorageTextureAccess::ReadOnly,
                        TextureAccess::WriteOnly => wgpu::StorageTextureAccess::WriteOnly,
                    },
                    format: wgpu::TextureFormat::Rgba32Float,
                    view_dimension: wgpu::TextureViewDimension::D2,
                },
                count: None,
            });
        }
        let label = format!("{}::{}", key.shader, key.entry);
        let bgl = self
            .0
            .device
            .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                label: Some(&label),
                entries: &entries,
            });
        let layout = self
            .0
            .device
            .create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some(&label),
                bind_group_layouts: &[Some(&bgl)],
                immediate_size: 0,
            });
        let constants: Vec<(&str, f64)> = key
            .constants
            .iter()
            .map(|(n, v)| (*n, f64::from_bits(*v)))
            .collect();
        let pipeline = self
            .0
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(&label),
                layout: Some(&layout),
                module: &module,
                entry_point: Some(key.entry),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants: &constants,
                    zero_initialize_workgroup_memory: true,
                },
                cache: None,
            });
        self.0
            .pipelines
            .borrow_mut()
            .insert(key.clone(), (pipeline.clone(), bgl.clone()));
        (pipeline, bgl)
    }

    /// Copy the first `vec4s` vec4 values of `src` into the operand texture `slot`: a `rgba32float`
    /// storage texture, [`OPERAND_TEXTURE_WIDTH`] texels wide, vec4 `i` at texel
    /// `(i % OPERAND_TEXTURE_WIDTH, i / OPERAND_TEXTURE_WIDTH)`. The copy is a buffer-to-texture transfer
    /// recorded in order with the dispatches around it (on lavapipe a row-by-row memcpy, 2-3x faster
    /// than a copy kernel). Each `slot` keeps one texture, replaced by a taller one (rows rounded up to
    /// a power of two, at most the adapter's limit) when a request does not fit, so memory stays at the
    /// largest operand per slot; work recorded later sees what was written later (a replaced texture
    /// lives on while recorded work uses it). Returns the texture's view, or `None` when the rows would
    /// exceed the adapter's texture height. Kernels read operands through such textures on CPU
    /// adapters, where a texel load is several times cheaper than a storage-buffer load.
    pub fn copy_to_operand_texture(
        &self,
        src: &wgpu::Buffer,
        slot: u8,
        vec4s: usize,
    ) -> Option<wgpu::TextureView> {
        let (texture, view) = self.operand_texture(slot, vec4s)?;
        if vec4s > 0 {
            self.0.pending.borrow_mut().push(Command::CopyToTexture {
                src: src.clone(),
                dst: texture,
                texels: vec4s as u32,
            });
        }
        Some(view)
    }

    fn operand_texture(
        &self,
        slot: u8,
        vec4s: usize,
    ) -> Option<(wgpu::Texture, wgpu::TextureView)> {
        let rows = vec4s.div_ceil(OPERAND_TEXTURE_WIDTH as usize).max(1);
        let mut textures = self.0.operand_textures.borrow_mut();
        if let Some((have, texture, view)) = textures.get(&slot)
            && *have as usize >= rows
        {
            return Some((texture.clone(), view.clone()));
        }
        let max_rows = self.0.limits.max_texture_dimension_2d;
        if rows > max_rows as usize {
            return None;
        }
        let rows = (rows as u32).next_power_of_two().min(max_rows);
        let texture = self.0.device.create_texture(&wgpu::TextureDescriptor {
            label: Some("operand texture"),
            size: wgpu::Extent3d {
                width: OPERAND_TEXTURE_WIDTH,
                height: rows,
                depth_or_array_layers: 1,
            },
            mip_level_count: 1,
            sample_count: 1,
            dimension: wgpu::TextureDimension::D2,
            format: wgpu::TextureFormat::Rgba32Float,
            usage: wgpu::TextureUsages::STORAGE_BINDING | wgpu::TextureUsages::COPY_DST,
            view_formats: &[],
        });
        let view = texture.create_view(&wgpu::TextureViewDescriptor::default());
        textures.insert(slot, (rows, texture.clone(), view.clone()));
        Some((texture, view))
    }

    /// Number of pipelines compiled so far.
    pub fn pipeline_count(&self) -> usize {
        self.0.pipelines.borrow().len()
    }

    /// Record one kernel launch. `params` goes to binding 0 (a uniform); `buffers` to bindings 1.. in order.
    pub fn dispatch(
        &self,
        shader: &'static Shader,
        entry: &'static str,
        constants: &[(&'static str, f64)],
        params: &[u8],
        buffers: &[(&wgpu::Buffer, Access)],
        groups: [u32; 3],
    ) -> Result<()> {
        self.dispatch_with_textures(shader, entry, constants, params, buffers, &[], groups)
    }

    /// [`Gpu::dispatch`] with `rgba32float` storage textures at the given binding numbers (after the
    /// buffers' `1..=buffers.len()`).
    #[allow(clippy::too_many_arguments)]
    pub fn dispatch_with_textures(
        &self,
        shader: &'static Shader,
        entry: &'static str,
        constants: &[(&'static str, f64)],
        params: &[u8],
        buffers: &[(&wgpu::Buffer, Access)],
        textures: &[(u32, &wgpu::TextureView, TextureAccess)],
        groups: [u32; 3],
    ) -> Result<()> {
        if let Some((binding, _, _)) = textures.iter().find(|t| t.0 as usize <= buffers.len()) {
            return Err(Error::Other(format!(
                "{}::{entry}: texture binding {binding} overlaps the buffers' 1..={}",
                shader.name,
                buffers.len()
            )));
        }
        if groups.contains(&0) {
            return Ok(());
        }
        let max = self.0.limits.max_compute_workgroups_per_dimension;
        if groups.iter().any(|&g| g > max) {
            return Err(Error::Device(format!(
                "{}::{entry} needs {groups:?} workgroups but the adapter allows {max} per dimension; \
                 use a smaller batch",
                shader.name
            )));
        }
        assert!(
            params.len() as u64 <= UNIFORM_SLOT,
            "uniform struct too large"
        );
        if self.0.arena_bytes.borrow().len() as u64 >= UNIFORM_SLOT * ARENA_SLOTS {
            self.flush()?;
        }
        let key = PipelineKey {
            shader: shader.name,
            entry,
            constants: constants.iter().map(|(n, v)| (*n, v.to_bits())).collect(),
            bindings: buffers.iter().map(|b| b.1).collect(),
            textures: textures.iter().map(|t| (t.0, t.2)).collect(),
        };
        let (pipeline, bgl) = self.pipeline(&key, shader);
        let offset = {
            let mut arena = self.0.arena_bytes.borrow_mut();
            let offset = arena.len() as u64;
            arena.extend_from_slice(params);
            arena.resize((offset + UNIFORM_SLOT) as usize, 0);
            offset
        };
        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: &self.0.arena,
                offset,
                size: wgpu::BufferSize::new((params.len() as u64).max(16).next_multiple_of(16)),
            }),
        }];
        for (i, (buf, _)) in buffers.iter().enumerate() {
            entries.push(wgpu::BindGroupEntry {
                binding: i as u32 + 1,
                resource: buf.as_entire_binding(),
            });
        }
        for (binding, view, _) in textures {
            entries.push(wgpu::BindGroupEntry {
                binding: *binding,
                resource: wgpu::BindingResource::TextureView(view),
            });
        }
        let bind_group = self.0.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &bgl,
            entries: &entries,
        });
        self.0.pending.borrow_mut().push(Command::Dispatch {
            pipeline,
            bind_group,
            groups,
        });
        self.0.dispatches.set(self.0.dispatches.get() + 1);
        if let Some(profile) = &self.0.profile {
            let start = std::time::Instant::now();
            self.sync()?;
            let ms = start.elapsed().as_secs_f64() * 1e3;
            let mut p = profile.borrow_mut();
            let e = p.entry(format!("{}::{entry}", shader.name)).or_default();
            e.0 += 1;
            e.1 += ms;
        }
        Ok(())
    }

    /// With `VITGAN_PROFILE=1`: (kernel, dispatches, total ms), slowest first. Empty otherwise.
    pub fn profile_report(&self) -> Vec<(String, u64, f64)> {
        let Some(profile) = &self.0.profile else {
            return Vec::new();
        };
        let mut v: Vec<(String, u64, f64)> = profile
            .borrow()
            .iter()
            .map(|(k, (n, ms))| (k.clone(), *n, *ms))
            .collect();
        v.sort_by(|a, b| b.2.total_cmp(&a.2));
        v
    }

    /// Record a buffer-to-buffer copy (ordered with the dispatches around it).
    pub fn copy(
        &self,
        src: &wgpu::Buffer,
        src_offset: u64,
        dst: &wgpu::Buffer,
        dst_offset: u64,
        bytes: u64,
    ) {
        if bytes > 0 {
            self.0.pending.borrow_mut().push(Command::Copy {
                src: src.clone(),
                src_offset,
                dst: dst.clone(),
                dst_offset,
                bytes,
            });
        }
    }

    /// Record zeroing the first `bytes` bytes (a multiple of 4) of `dst`.
    pub fn clear(&self, dst: &wgpu::Buffer, bytes: u64) {
        if bytes > 0 {
            self.0.pending.borrow_mut().push(Command::Clear {
                dst: dst.clone(),
                bytes: bytes.next_multiple_of(4),
            });
        }
    }

    /// Write host data into a buffer, ordered after everything recorded so far.
    pub fn write(&self, dst: &wgpu::Buffer, offset: u64, data: &[u8]) -> Result<()> {
        // queue writes land before the next submit's commands, so submit what is recorded first.
        self.flush()?;
        self.0.queue.write_buffer(dst, offset, data);
        self.0
            .uploaded_bytes
            .set(self.0.uploaded_bytes.get() + data.len() as u64);
        Ok(())
    }

    /// Submit all recorded work (does not wait for it).
    pub fn flush(&self) -> Result<()> {
        let cmds = std::mem::take(&mut *self.0.pending.borrow_mut());
        let arena_used = std::mem::take(&mut *self.0.arena_bytes.borrow_mut());
        if !arena_used.is_empty() {
            self.0.queue.write_buffer(&self.0.arena, 0, &arena_used);
        }
        if cmds.is_empty() {
            return self.check_errors();
        }
        let mut encoder = self
            .0
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
        let timing = self
            .0
            .timing
            .as_ref()
            .filter(|_| self.0.timing_armed.replace(false));
        let n_passes = count_passes(&cmds);
        let mut pass_index = 0;
        let mut i = 0;
        while i < cmds.len() {
            match &cmds[i] {
                Command::Copy {
                    src,
                    src_offset,
                    dst,
                    dst_offset,
                    bytes,
                } => {
                    encoder.copy_buffer_to_buffer(src, *src_offset, dst, *dst_offset, *bytes);
                    i += 1;
                }
                Command::Clear { dst, bytes } => {
                    encoder.clear_buffer(dst, 0, Some(*bytes));
                    i += 1;
                }
                Command::CopyToTexture { src, dst, texels } => {
                    record_texture_copy(&mut encoder, src, dst, *texels);
                    i += 1;
                }
                Command::Dispatch { .. } => {
                    // the first pass writes the start, the last one the end, passes between none
                    let (first, last) = (pass_index == 0, pass_index + 1 == n_passes);
                    let timestamp_writes = timing.filter(|_| first || last).map(|t| {
                        wgpu::ComputePassTimestampWrites {
                            query_set: &t.query_set,
                            beginning_of_pass_write_index: first.then_some(0),
                            end_of_pass_write_index: last.then_some(1),
                        }
                    });
                    let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                        label: None,
                        timestamp_writes,
                    });
                    while let Some(Command::Dispatch {
                        pipeline,
                        bind_group,
                        groups,
                    }) = cmds.get(i)
                    {
                        pass.set_pipeline(pipeline);
                        pass.set_bind_group(0, bind_group, &[]);
                        pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
                        i += 1;
                    }
                    pass_index += 1;
                }
            }
        }
        if let Some(t) = timing {
            encoder.resolve_query_set(&t.query_set, 0..2, &t.resolve, 0);
        }
        self.0.queue.submit([encoder.finish()]);
        self.0.submits.set(self.0.submits.get() + 1);
        self.check_errors()
    }

    fn check_errors(&self) -> Result<()> {
        let mut errs = self.0.errors.lock().unwrap();
        if errs.is_empty() {
            Ok(())
        } else {
            Err(Error::Device(std::mem::take(&mut *errs).join("; ")))
        }
    }

    /// Submit recorded work and block until the device is idle.
    pub fn sync(&self) -> Result<()> {
        self.flush()?;
        self.0
            .device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Device(format!("waiting for the GPU failed: {e}")))?;
        self.check_errors()
    }

    /// Copy `bytes` bytes of `src` (from `offset`) to the host without blocking; wait on the ticket later.
    pub fn read_async(&self, src: &wgpu::Buffer, offset: u64, bytes: u64) -> Result<Readback> {
        let padded = bytes.max(4).next_multiple_of(4);
        let staging = self.0.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: padded,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        self.copy(src, offset, &staging, 0, padded);
        self.flush()?;
        let done: Arc<Mutex<Option<std::result::Result<(), wgpu::BufferAsyncError>>>> =
            Arc::default();
        let flag = done.clone();
        staging.map_async(wgpu::MapMode::Read, .., move |r| {
            *flag.lock().unwrap() = Some(r)
        });
        Ok(Readback {
            gpu: self.clone(),
            staging,
            bytes,
            done,
        })
    }

    /// Blocking read of `bytes` bytes of `src` from `offset`.
    pub fn read(&self, src: &wgpu::Buffer, offset: u64, bytes: u64) -> Result<Vec<u8>> {
        self.read_async(src, offset, bytes)?.wait()
    }

    /// Run `body`, which records dispatches, and return GPU time in ms between the first and the last pass
    /// (timestamp queries), or `None` when the adapter has no timestamps. Work recorded before is submitted first.
    pub fn time_gpu(&self, body: impl FnOnce() -> Result<()>) -> Result<Option<f64>> {
        self.flush()?;
        let Some(t) = &self.0.timing else {
            body()?;
            self.sync()?;
            return Ok(None);
        };
        self.0.timing_armed.set(true);
        body()?;
        let has_pass = self
            .0
            .pending
            .borrow()
            .iter()
            .any(|c| matches!(c, Command::Dispatch { .. }));
        if !self.0.timing_armed.get() || !has_pass {
            // no compute pass recorded (timestamps come from passes), or the work was split over
            // several submits: fall back to the caller's wall clock
            self.0.timing_armed.set(false);
            self.sync()?;
            return Ok(None);
        }
        self.flush()?;
        let raw = self.read(&t.resolve, 0, 16)?;
        let ts: &[u64] = bytemuck::cast_slice(&raw);
        let period = self.0.queue.get_timestamp_period() as f64;
        Ok(Some(ts[1].wrapping_sub(ts[0]) as f64 * period / 1e6))
    }
}

/// `texels` vec4s of `src` into `dst` row after row: the whole rows in one copy, the rest of the last
/// row in a second (a row is OPERAND_TEXTURE_WIDTH · 16 bytes, a multiple of the 256-byte alignment).
fn record_texture_copy(
    encoder: &mut wgpu::CommandEncoder,
    src: &wgpu::Buffer,
    dst: &wgpu::Texture,
    texels: u32,
) {
    let row_bytes = OPERAND_TEXTURE_WIDTH * 16;
    let (full_rows, rest) = (
        texels / OPERAND_TEXTURE_WIDTH,
        texels % OPERAND_TEXTURE_WIDTH,
    );
    let mut copy = |row0: u32, width: u32, height: u32| {
        encoder.copy_buffer_to_texture(
            wgpu::TexelCopyBufferInfo {
                buffer: src,
                layout: wgpu::TexelCopyBufferLayout {
                    offset: row0 as u64 * row_bytes as u64,
                    bytes_per_row: Some(row_bytes),
                    rows_per_image: Some(height),
                },
            },
            wgpu::TexelCopyTextureInfo {
                texture: dst,
                mip_level: 0,
                origin: wgpu::Origin3d {
                    x: 0,
                    y: row0,
                    z: 0,
                },
                aspect: wgpu::TextureAspect::All,
            },
            wgpu::Extent3d {
                width,
                height,
                depth_or_array_layers: 1,
            },
        );
    };
    if full_rows > 0 {
        copy(0, OPERAND_TEXTURE_WIDTH, full_rows);
    }
    if rest > 0 {
        copy(full_rows, rest, 1);
    }
}

fn count_passes(cmds: &[Command]) -> usize {
    let mut n = 0;
    let mut in_pass = false;
    for c in cmds {
        match c {
            Command::Dispatch { .. } if !in_pass => {
                n += 1;
                in_pass = true;
            }
            Command::Dispatch { .. } => {}
            Command::Copy { .. } | Command::Clear { .. } | Command::CopyToTexture { .. } => {
                in_pass = false
            }
        }
    }
    n
}

/// A pending copy to the host (see [`Gpu::read_async`]).
pub struct Readback {
    gpu: Gpu,
    staging: wgpu::Buffer,
    bytes: u64,
    done: Arc<Mutex<Option<std::result::Result<(), wgpu::BufferAsyncError>>>>,
}

impl Readback {
    /// Whether the data has arrived (never blocks).
    pub fn is_ready(&self) -> bool {
        let _ = self.gpu.0.device.poll(wgpu::PollType::Poll);
        self.done.lock().unwrap().is_some()
    }

    /// Block until the data has arrived and return it.
    pub fn wait(self) -> Result<Vec<u8>> {
        loop {
            if let Some(r) = self.done.lock().unwrap().take() {
                r.map_err(|e| Error::Device(format!("reading back from the GPU failed: {e}")))?;
                break;
            }
            self.gpu
                .0
                .device
                .poll(wgpu::PollType::wait_indefinitely())
                .map_err(|e| Error::Device(format!("waiting for the GPU failed: {e}")))?;
        }
        let view = self
            .staging
            .get_mapped_range(..)
            .map_err(|e| Error::Device(format!("mapping the readback buffer failed: {e:?}")))?;
        let out = view[..self.bytes as usize].to_vec();
        drop(view);
        self.staging.unmap();
        Ok(out)
    }
}

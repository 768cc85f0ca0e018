//! Drawing the frame: a wgpu texture, one render pass that scales it into its letterbox rectangle,
//! and a surface whose size always follows the window.
//!
//! Why not `Pixels::render`: pixels 0.17 retries `get_current_texture` without bound on
//! `Outdated`/`Lost`, reconfiguring the surface with the size it was last told each time. When
//! the window's size changes before pixels hears of it (the viewer sizing its window to the first
//! frame, or a user dragging its edge while frames arrive), Vulkan's X11 surface stays out of
//! date and that loop never ends: the event loop hangs with the window black. pixels keeps its
//! surface private, so the viewer drives wgpu itself (through `pixels::wgpu`, so there is one
//! wgpu in the build), asks the window for its real size whenever the surface is out of date, and
//! skips a frame rather than retry forever.
//!
//! Scaling runs on the GPU in one pass: the picture is drawn into the [`Fit`] rectangle (the
//! viewport), the bars are the clear colour. Enlarging samples bilinearly; shrinking averages the
//! source texels under each window pixel with a few bilinear taps ([`taps`]: a box filter, in
//! linear light since the texture is sRGB), so a 1920x1080 screen in an 800x450 window stays
//! legible instead of aliasing like plain bilinear minification.

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use pixels::wgpu;
use tracing::{debug, warn};
use winit::window::Window;

use super::{Fit, ViewerError};

/// Most bilinear taps per axis when shrinking (see [`taps`]).
pub(crate) const MAX_TAPS: u32 = 4;

const SHADER: &str = r#"
struct Params {
    // the viewport's size in pixels, and bilinear taps per axis
    dst: vec2<f32>,
    taps: vec2<f32>,
}

@group(0) @binding(0) var picture: texture_2d<f32>;
@group(0) @binding(1) var bilinear: sampler;
@group(0) @binding(2) var<uniform> params: Params;

struct Varyings {
    @builtin(position) position: vec4<f32>,
    @location(0) uv: vec2<f32>,
}

// One triangle covering the viewport; uv is 0..1 across it.
@vertex
fn vs_main(@builtin(vertex_index) i: u32) -> Varyings {
    let x = f32((i << 1u) & 2u);
    let y = f32(i & 2u);
    var out: Varyings;
    out.position = vec4<f32>(x * 2.0 - 1.0, 1.0 - y * 2.0, 0.0, 1.0);
    out.uv = vec2<f32>(x, y);
    return out;
}

// Averages taps.x * taps.y bilinear samples spread evenly over the part of the picture this
// pixel covers (1 / dst of it in uv). With one tap this is a plain bilinear sample at the centre.
@fragment
fn fs_main(v: Varyings) -> @location(0) vec4<f32> {
    let covered = 1.0 / params.dst;
    let step = covered / params.taps;
    let first = v.uv - covered * 0.5 + step * 0.5;
    var sum = vec4<f32>(0.0);
    for (var j = 0.0; j < params.taps.y; j += 1.0) {
        for (var i = 0.0; i < params.taps.x; i += 1.0) {
            sum += textureSampleLevel(picture, bilinear, first + step * vec2<f32>(i, j), 0.0);
        }
    }
    return vec4<f32>((sum / (params.taps.x * params.taps.y)).rgb, 1.0);
}
"#;

/// Bilinear taps per axis to average when `src` texels are shown on `dst` pixels.
///
/// A bilinear tap placed halfway between two texel centres averages both, so `n` evenly spread
/// taps cover `2n` texels: one tap up to 2:1 shrinking (exact at 2:1), then one more per two
/// texels, up to [`MAX_TAPS`] (exact box filtering down to 1/8). That keeps the cost low even
/// on a software rasteriser (lavapipe): 4 taps for a 1920-wide screen in a 600-wide window.
pub(crate) fn taps(src: u32, dst: u32) -> u32 {
    if dst == 0 {
        return 1;
    }
    src.div_ceil(dst.saturating_mul(2)).clamp(1, MAX_TAPS)
}

/// What one [`Renderer::render`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Drawn {
    /// The picture is on screen.
    Shown,
    /// Nothing this time (window minimised or covered, surface busy or out of date): try again
    /// a little later.
    Later,
}

/// The picture's texture and everything needed to draw it; one per window.
pub(crate) struct Renderer {
    instance: wgpu::Instance,
    surface: wgpu::Surface<'static>,
    adapter: wgpu::Adapter,
    device: wgpu::Device,
    queue: wgpu::Queue,
    config: wgpu::SurfaceConfiguration,
    /// Whether `config` needs applying before the next frame.
    reconfigure: bool,
    pipeline: wgpu::RenderPipeline,
    layout: wgpu::BindGroupLayout,
    sampler: wgpu::Sampler,
    params: wgpu::Buffer,
    /// The picture, its size and the bind group that shows it; `None` before the first frame.
    picture: Option<(wgpu::Texture, (u32, u32), wgpu::BindGroup)>,
    /// Last, so that the surface goes before the window it draws in (fields drop in order).
    window: Arc<Window>,
}

impl std::fmt::Debug for Renderer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Renderer")
            .field("adapter", &self.adapter.get_info().name)
            .field("surface", &(self.config.width, self.config.height))
            .field("picture", &self.picture.as_ref().map(|p| p.1))
            .finish_non_exhaustive()
    }
}

fn graphics(what: &str, e: impl std::fmt::Display) -> ViewerError {
    ViewerError::Graphics(format!("{what}: {e}"))
}

impl Renderer {
    /// Sets up wgpu for `window`: a surface, an adapter that can present to it, a device.
    ///
    /// # Errors
    ///
    /// [`ViewerError::NoAdapter`] when no backend or adapter can draw in the window (no Vulkan
    /// driver);
    /// [`ViewerError::Graphics`] for the other steps.
    pub(crate) fn new(window: Arc<Window>) -> Result<Self, ViewerError> {
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
            backends: wgpu::Backends::from_env().unwrap_or_else(wgpu::Backends::all),
            ..wgpu::InstanceDescriptor::new_without_display_handle().with_env()
        });
        let surface = instance
            .create_surface(window.clone())
            // No backend that can present to this window: the same cure as no adapter.
            .map_err(|e| ViewerError::NoAdapter(e.to_string()))?;
        let adapter = block_on(instance.request_adapter(&wgpu::RequestAdapterOptions {
            power_preference: wgpu::PowerPreference::from_env().unwrap_or_default(),
            force_fallback_adapter: false,
            compatible_surface: Some(&surface),
        }))
        .map_err(|e| ViewerError::NoAdapter(e.to_string()))?;
        let (device, queue) = block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("quicdesk viewer"),
            required_limits: adapter.limits(),
            ..Default::default()
        }))
        .map_err(|e| graphics("the GPU adapter gives no device", e))?;
        // wgpu's default for a validation error is to panic; the viewer logs and goes on.
        device.on_uncaptured_error(Arc::new(|e: wgpu::Error| warn!("wgpu: {e}")));
        device.set_device_lost_callback(|reason, message| {
            debug!(?reason, "wgpu device lost: {message}");
        });

        let caps = surface.get_capabilities(&adapter);
        let format = caps
            .formats
            .iter()
            .copied()
            .find(wgpu::TextureFormat::is_srgb)
            .or_else(|| caps.formats.first().copied())
            .ok_or_else(|| graphics("the window's surface", "it offers no pixel format"))?;
        // Mailbox shows the newest frame without tearing and without waiting for vblank.
        let present_mode = if caps.present_modes.contains(&wgpu::PresentMode::Mailbox) {
            wgpu::PresentMode::Mailbox
        } else {
            wgpu::PresentMode::AutoVsync
        };
        let size = window.inner_size();
        let config = wgpu::SurfaceConfiguration {
            usage: wgpu::TextureUsages::RENDER_ATTACHMENT,
            format,
            width: size.width.max(1),
            height: size.height.max(1),
            present_mode,
            desired_maximum_frame_latency: 2,
            alpha_mode: caps
                .alpha_modes
                .first()
                .copied()
                .unwrap_or(wgpu::CompositeAlphaMode::Auto),
            view_formats: vec![],
        };

        let shader = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("quicdesk viewer scaling"),
            source: wgpu::ShaderSource::Wgsl(SHADER.into()),
        });
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("quicdesk viewer picture"),
            entries: &[
                wgpu::BindGroupLayoutEntry {
                    binding: 0,
                    visibility: wgpu::ShaderStages::FRAGMENT,
                    ty: wgpu::BindingType::Texture {
                        sample_type: wgpu::TextureSampleType::Float { filterable: true },
                        view_dimension: wgpu::TextureViewDimension::D2,
                        multisampled: false,
                    },
                    count: None,
                },
                wgpu::BindGroupLayoutEntry {
                    binding: 1,
                    visibility: wgpu::ShaderStages::FRAGMENT,
                    ty: wgpu::BindingType::Sampler(wgpu::SamplerBindingType::Filtering),
                    count: None,
                },
                wgpu::BindGroupLayoutEntry {
                    binding: 2,
                    visibility: wgpu::ShaderStages::FRAGMENT,
                    ty: wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Uniform,
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                    count: None,
                },
            ],
        });
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("quicdesk viewer"),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let pipeline = device.create_render_pipeline(&wgpu::RenderPipelineDescriptor {
            label: Some("quicdesk viewer"),
            layout: Some(&pipeline_layout),
            vertex: wgpu::VertexState {
                module: &shader,
                entry_point: Some("vs_main"),
                buffers: &[],
                compilation_options: Default::default(),
            },
            primitive: wgpu::PrimitiveState::default(),
            depth_stencil: None,
            multisample: wgpu::MultisampleState::default(),
            fragment: Some(wgpu::FragmentState {
                module: &shader,
                entry_point: Some("fs_main"),
                compilation_options: Default::default(),
                targets: &[Some(wgpu::ColorTargetState {
                    format,
                    blend: None,
                    write_mask: wgpu::ColorWrites::ALL,
                })],
            }),
            multiview_mask: None,
            cache: None,
        });
        let sampler = device.create_sampler(&wgpu::SamplerDescriptor {
            label: Some("quicdesk viewer"),
            address_mode_u: wgpu::AddressMode::ClampToEdge,
            address_mode_v: wgpu::AddressMode::ClampToEdge,
            mag_filter: wgpu::FilterMode::Linear,
            min_filter: wgpu::FilterMode::Linear,
            ..Default::default()
        });
        let params = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("quicdesk viewer params"),
            size: 16,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        Ok(Self {
            instance,
            surface,
            adapter,
            device,
            queue,
            config,
            reconfigure: true,
            pipeline,
            layout,
            sampler,
            params,
            picture: None,
            window,
        })
    }

    /// The adapter's name, for the log.
    pub(crate) fn adapter_name(&self) -> String {
        let info = self.adapter.get_info();
        format!("{} ({:?})", info.name, info.backend)
    }

    /// The size of the picture being shown, once there is one.
    pub(crate) fn picture_size(&self) -> Option<(u32, u32)> {
        self.picture.as_ref().map(|p| p.1)
    }

    /// Copies a tightly packed RGBA picture into the texture, making a new texture when its size
    /// changed.
    ///
    /// # Errors
    ///
    /// [`ViewerError::FrameTooLarge`] when the GPU cannot hold a picture that size; the previous
    /// picture stays.
    pub(crate) fn upload(
        &mut self,
        width: u32,
        height: u32,
        rgba: &[u8],
    ) -> Result<(), ViewerError> {
        let max = self.device.limits().max_texture_dimension_2d;
        if width == 0 || height == 0 || width > max || height > max {
            return Err(ViewerError::FrameTooLarge { width, height, max });
        }
        if rgba.len() as u64 != u64::from(width) * u64::from(height) * 4 {
            return Err(ViewerError::Graphics(format!(
                "a {width}x{height} frame came with {} bytes",
                rgba.len()
            )));
        }
        if self.picture_size() != Some((width, height)) {
            let texture = self.device.create_texture(&wgpu::TextureDescriptor {
                label: Some("quicdesk viewer picture"),
                size: extent(width, height),
                mip_level_count: 1,
                sample_count: 1,
                dimension: wgpu::TextureDimension::D2,
                format: wgpu::TextureFormat::Rgba8UnormSrgb,
                usage: wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::COPY_DST,
                view_formats: &[],
            });
            let view = texture.create_view(&wgpu::TextureViewDescriptor::default());
            let group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some("quicdesk viewer picture"),
                layout: &self.layout,
                entries: &[
                    wgpu::BindGroupEntry {
                        binding: 0,
                        resource: wgpu::BindingResource::TextureView(&view),
                    },
                    wgpu::BindGroupEntry {
                        binding: 1,
                        resource: wgpu::BindingResource::Sampler(&self.sampler),
                    },
                    wgpu::BindGroupEntry {
                        binding: 2,
                        resource: self.params.as_entire_binding(),
                    },
                ],
            });
            self.picture = Some((texture, (width, height), group));
        }
        if let Some((texture, _, _)) = &self.picture {
            self.queue.write_texture(
                wgpu::TexelCopyTextureInfo {
                    texture,
                    mip_level: 0,
                    origin: wgpu::Origin3d::ZERO,
                    aspect: wgpu::TextureAspect::All,
                },
                rgba,
                wgpu::TexelCopyBufferLayout {
                    offset: 0,
                    bytes_per_row: Some(width * 4),
                    rows_per_image: Some(height),
                },
                extent(width, height),
            );
        }
        Ok(())
    }

    /// The window's size now (asked of the display server), clamped to what the GPU can hold.
    fn window_size(&self) -> (u32, u32) {
        let size = self.window.inner_size();
        let max = self.device.limits().max_texture_dimension_2d;
        (size.width.min(max), size.height.min(max))
    }

    /// Notes a new window size (from a resize event); the surface follows at the next frame.
    pub(crate) fn resize(&mut self, width: u32, height: u32) {
        if (width, height) != (self.config.width, self.config.height) {
            self.reconfigure = true;
        }
    }

    /// Draws the picture (or only the background before the first frame) fit into the window.
    ///
    /// Never loops: an out-of-date surface is reconfigured to the window's current size once;
    /// if that still fails, or the window cannot be drawn now, it returns [`Drawn::Later`].
    pub(crate) fn render(&mut self) -> Drawn {
        for attempt in 0..2 {
            let (w, h) = self.window_size();
            if w == 0 || h == 0 {
                return Drawn::Later; // minimised
            }
            if self.reconfigure || (w, h) != (self.config.width, self.config.height) {
                self.config.width = w;
                self.config.height = h;
                self.surface.configure(&self.device, &self.config);
                self.reconfigure = false;
            }
            let frame = match self.surface.get_current_texture() {
                wgpu::CurrentSurfaceTexture::Success(frame) => frame,
                wgpu::CurrentSurfaceTexture::Suboptimal(frame) => {
                    // Drawn and shown, but the next frame gets a fresh configuration.
                    self.reconfigure = true;
                    frame
                }
                wgpu::CurrentSurfaceTexture::Outdated => {
                    debug!(attempt, "surface out of date");
                    self.reconfigure = true;
                    continue;
                }
                wgpu::CurrentSurfaceTexture::Lost => {
                    debug!(attempt, "surface lost; making a new one");
                    match self.instance.create_surface(self.window.clone()) {
                        Ok(surface) => self.surface = surface,
                        Err(e) => warn!("cannot remake the window's surface: {e}"),
                    }
                    self.reconfigure = true;
                    continue;
                }
                wgpu::CurrentSurfaceTexture::Timeout
                | wgpu::CurrentSurfaceTexture::Occluded
                | wgpu::CurrentSurfaceTexture::Validation => return Drawn::Later,
            };
            self.draw(&frame.texture, (w, h));
            frame.present();
            return Drawn::Shown;
        }
        Drawn::Later
    }

    fn draw(&self, target: &wgpu::Texture, window: (u32, u32)) {
        let view = target.create_view(&wgpu::TextureViewDescriptor::default());
        let mut encoder = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("quicdesk viewer"),
            });
        {
            let mut pass = encoder.begin_render_pass(&wgpu::RenderPassDescriptor {
                label: Some("quicdesk viewer"),
                color_attachments: &[Some(wgpu::RenderPassColorAttachment {
                    view: &view,
                    resolve_target: None,
                    ops: wgpu::Operations {
                        load: wgpu::LoadOp::Clear(wgpu::Color::BLACK),
                        store: wgpu::StoreOp::Store,
                    },
                    depth_slice: None,
                })],
                depth_stencil_attachment: None,
                timestamp_writes: None,
                occlusion_query_set: None,
                multiview_mask: None,
            });
            if let Some((_, size, group)) = &self.picture {
                let fit = Fit::new(*size, window);
                let params: [f32; 4] = [
                    fit.width as f32,
                    fit.height as f32,
                    taps(size.0, fit.width) as f32,
                    taps(size.1, fit.height) as f32,
                ];
                let bytes: Vec<u8> = params.iter().flat_map(|v| v.to_le_bytes()).collect();
                self.queue.write_buffer(&self.params, 0, &bytes);
                pass.set_viewport(
                    fit.x as f32,
                    fit.y as f32,
                    fit.width as f32,
                    fit.height as f32,
                    0.0,
                    1.0,
                );
                pass.set_pipeline(&self.pipeline);
                pass.set_bind_group(0, group, &[]);
                pass.draw(0..3, 0..1);
            }
        }
        self.queue.submit(Some(encoder.finish()));
    }
}

fn extent(width: u32, height: u32) -> wgpu::Extent3d {
    wgpu::Extent3d {
        width,
        height,
        depth_or_array_layers: 1,
    }
}

/// Runs a future to completion on this thread (wgpu's adapter and device requests resolve
/// at once on native backends; this waits properly if one does not).
fn block_on<F: Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::park();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taps_cover_every_source_texel_when_shrinking() {
        assert_eq!(taps(640, 640), 1);
        assert_eq!(taps(640, 1280), 1, "enlarging: one bilinear sample");
        assert_eq!(taps(1920, 960), 1, "2:1: one tap between four texels");
        assert_eq!(taps(1920, 1000), 1);
        assert_eq!(taps(1920, 640), 2, "3:1: two taps cover four texels");
        assert_eq!(taps(1920, 480), 2, "4:1: exact");
        assert_eq!(taps(1920, 479), 3);
        assert_eq!(taps(3840, 100), MAX_TAPS, "capped");
        assert_eq!(taps(100, 0), 1);
        assert_eq!(taps(0, 100), 1);
    }

    #[test]
    fn block_on_waits_for_a_wake_from_another_thread() {
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(20));
            tx.send(7).unwrap();
        });
        assert_eq!(block_on(rx), Ok(7));
    }
}

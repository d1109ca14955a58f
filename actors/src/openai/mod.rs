//! Players and judges behind OpenAI-compatible chat-completions endpoints (vLLM, llama.cpp's server, TGI, hosted
//! APIs, `sparring serve`): the wire format both directions share (`wire`), the endpoint parameters (`params`), the
//! HTTP client with its concurrency, rate limit, retries and timeouts (`client`), and the kinds `openai-chat`
//! (attacker or defender, `chat`) and `openai-judge` (`judge`), which use the same prompts and strict parsers as
//! the local chat-LM kinds.

pub mod chat;
pub mod client;
pub mod judge;
pub mod params;
pub mod wire;

/// Registers `openai-chat` (attacker, defender) and `openai-judge`.
pub fn register(reg: &mut sparring_engine::registry::Registry) {
    chat::register(reg);
    judge::register(reg);
}

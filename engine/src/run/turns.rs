//! Multi-turn conversations (`game.turns` > 1): the turns before the last. Each of the attacker's samples for a
//! seed opens a conversation (a chain, not a tree): the defender answers each of its turns once, and the
//! attacker writes the next turn after the conversation so far, until the last turn, which the round (or the
//! evaluation) then treats as it treats a single-turn rewrite: gated, answered `responses_per_attack` times,
//! judged. A turn that does not parse ends its conversation: it is the conversation's last turn (invalid).

use super::ctx::Ctx;
use super::round::shown;
use super::{RunError, rerr};
use crate::rng::derive;
use crate::roles::{GenRequest, Generation, Seed, Turn};
use crate::vocab::{Role, Slot};

/// One conversation's last attacker turn and the turns before it.
pub(super) struct Chain {
    pub(super) last: Generation,
    pub(super) history: Vec<Turn>,
}

impl Chain {
    /// A conversation of one turn so far.
    fn opened(last: Generation) -> Self {
        Chain {
            last,
            history: Vec::new(),
        }
    }
}

/// The conversations opened by `first` (per seed, the attacker's first turns), played to their last turn.
/// `keys[i][k]` names the conversation of sample `k` of seed `i`: its later requests are keyed
/// `<key>/t<turn>` (the attacker's turn) and `<key>/t<turn>/reply` (the defender's answer), with sampling seeds
/// derived from (the game's seed, `round`, key), so a replayed round, or a restarted role, samples the same.
/// With `game.turns` = 1 the first turns are the conversations.
pub(super) async fn converse(
    cx: &Ctx<'_>,
    round: u32,
    seeds: &[Seed],
    keys: &[Vec<String>],
    first: Vec<Vec<Generation>>,
) -> Result<Vec<Vec<Chain>>, RunError> {
    let g = &cx.loaded.scenario.game;
    let mut chains: Vec<Vec<Chain>> = first
        .into_iter()
        .map(|row| row.into_iter().map(Chain::opened).collect())
        .collect();
    for turn in 1..g.turns {
        // The conversations still going: their last turn parsed.
        let live: Vec<(usize, usize)> = chains
            .iter()
            .enumerate()
            .flat_map(|(i, row)| {
                row.iter()
                    .enumerate()
                    .filter(|(_, c)| c.last.parsed.is_some())
                    .map(move |(k, _)| (i, k))
            })
            .collect();
        if live.is_empty() {
            break;
        }
        let request =
            |chain: &Chain, i: usize, key: String, role: Role, input: String| GenRequest {
                rng_seed: derive(g.seed, round.into(), &key),
                key,
                role,
                seed: seeds[i].clone(),
                input,
                n: 1,
                history: chain.history.clone(),
            };
        let asks: Vec<GenRequest> = live
            .iter()
            .map(|&(i, k)| {
                let chain = &chains[i][k];
                let prompt = chain.last.parsed.clone().unwrap_or_default();
                let key = format!("{}/t{turn}/reply", keys[i][k]);
                request(chain, i, key, Role::Defender, prompt)
            })
            .collect();
        let (replies, _) = cx.generate(Slot::Defender, asks).await?;
        for (&(i, k), reply) in live.iter().zip(replies) {
            let reply = reply
                .into_iter()
                .next()
                .ok_or_else(|| rerr("the defender returned no reply to a turn"))?;
            let chain = &mut chains[i][k];
            let last = std::mem::take(&mut chain.last);
            chain.history.push(Turn {
                reply: shown(&reply).to_string(),
                prompt: last.parsed.unwrap_or_default(),
                attack: last.text,
                logprobs: last.logprobs,
            });
        }
        let asks: Vec<GenRequest> = live
            .iter()
            .map(|&(i, k)| {
                let key = format!("{}/t{}", keys[i][k], turn + 1);
                let seed_prompt = seeds[i].prompt.to_string();
                request(&chains[i][k], i, key, Role::Attacker, seed_prompt)
            })
            .collect();
        let (turns, _) = cx.generate(Slot::Attacker, asks).await?;
        for (&(i, k), out) in live.iter().zip(turns) {
            chains[i][k].last = out
                .into_iter()
                .next()
                .ok_or_else(|| rerr("the attacker returned no turn"))?;
        }
    }
    Ok(chains)
}

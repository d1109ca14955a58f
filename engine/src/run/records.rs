//! How a played round becomes its log records: [`RoundLog`] holds what the round played (seeds, rewrites,
//! responses, pending judgments, then its learn and evaluation records), and [`RoundLog::records`] turns it into
//! the records in their fixed order, off the game thread (on the commit's blocking thread).

use super::best_response::Deferred;
use super::round::{Resp, Rw};
use crate::record::{JudgmentRec, Record, ResponseRec, RewriteRec};
use crate::roles::{GenRequest, Seed, Turn};
use crate::vocab::{PayoffMode, Role, Side};

/// A judge verdict on its way to a [`JudgmentRec`]: `seed_at` indexes the defender requests (side `defender`)
/// or the round's seeds (side `attacker`).
pub(super) struct PendingJudgment {
    pub(super) side: Side,
    pub(super) seed_at: usize,
    pub(super) i: usize,
    pub(super) j: Option<usize>,
    pub(super) raw: String,
    pub(super) parsed: Option<Vec<f64>>,
    pub(super) version: u64,
}

/// What a round played, turned into its records off the game thread: on the commit's blocking thread, with
/// their serialization (building a round's ~1 000 records is milliseconds of CPU, which the game thread spent
/// beside the learners before).
pub(super) struct RoundLog {
    pub(super) run: String,
    pub(super) round: u32,
    pub(super) mode: PayoffMode,
    pub(super) attacker_version: u64,
    pub(super) defender_version: u64,
    pub(super) seeds: Vec<Seed>,
    /// `r<round>/<seed id>` per seed.
    pub(super) seed_keys: Vec<String>,
    /// Per seed, its rewrites.
    pub(super) rewrites: Vec<Vec<Rw>>,
    /// Per defender request, its responses.
    pub(super) responses: Vec<Vec<Resp>>,
    /// One per valid rewrite ([`Rw::defender_request`]).
    pub(super) defender_requests: Vec<GenRequest>,
    pub(super) judgments: Vec<PendingJudgment>,
    /// Learn and evaluation records, after the play's.
    pub(super) tail: Vec<Record>,
    /// An adaptive evaluation still playing, whose records go into `tail` at this index.
    pub(super) deferred: Option<(usize, Deferred)>,
}

impl RoundLog {
    /// The round's records, in a fixed order: per seed, each rewrite followed by its responses; then the
    /// judgments; then the tail.
    pub(super) fn records(mut self) -> Vec<Record> {
        let mut records = Vec::new();
        for si in 0..self.seeds.len() {
            self.play_records(si, &mut records);
        }
        let judgments = std::mem::take(&mut self.judgments);
        records.extend(judgments.into_iter().map(|pj| self.judgment_record(pj)));
        records.extend(std::mem::take(&mut self.tail));
        records
    }

    /// The records of seed `si`'s play: each rewrite followed by its responses.
    fn play_records(&self, si: usize, records: &mut Vec<Record>) {
        let (run, round, s) = (&self.run, self.round, &self.seeds[si]);
        for (ai, rw) in self.rewrites[si].iter().enumerate() {
            let attack_key = format!("{}/a{ai}", self.seed_keys[si]);
            records.push(Record::Rewrite(RewriteRec {
                run: run.clone(),
                round,
                seed_id: s.id.to_string(),
                set: s.set.to_string(),
                category: s.category,
                role: Role::Attacker,
                version: self.attacker_version,
                key: attack_key.clone(),
                input: s.prompt.to_string(),
                output: rw.text.clone(),
                parsed: rw.parsed.clone(),
                faithful_raw: rw.faithful_raw.clone(),
                faithful: rw.faithful,
                valid: rw.valid,
                representative: rw.representative,
                reward: rw.reward,
                turns: rw.history.iter().map(Turn::recorded).collect(),
            }));
            let Some(k) = rw.defender_request else {
                continue;
            };
            for (i, r) in self.responses[k].iter().enumerate() {
                records.push(Record::Response(ResponseRec {
                    run: run.clone(),
                    round,
                    seed_id: s.id.to_string(),
                    set: s.set.to_string(),
                    category: s.category,
                    role: Role::Defender,
                    version: self.defender_version,
                    key: format!("{attack_key}/d{i}"),
                    attack_key: attack_key.clone(),
                    input: self.defender_requests[k].input.clone(),
                    output: r.out.text.clone(),
                    shown: r.out.parsed.clone().filter(|p| *p != r.out.text),
                    complied_raw: r.complied_raw.clone(),
                    complied: r.complied,
                    reward: r.reward,
                }));
            }
        }
    }

    /// A judge verdict's record: its group is the defender request (side `defender`) or the seed (side
    /// `attacker`) it judged within.
    fn judgment_record(&self, pj: PendingJudgment) -> Record {
        let (seed_id, group) = match pj.side {
            Side::Defender => {
                let request = &self.defender_requests[pj.seed_at];
                (request.seed.id.to_string(), request.key.clone())
            }
            Side::Attacker => (
                self.seeds[pj.seed_at].id.to_string(),
                self.seed_keys[pj.seed_at].clone(),
            ),
        };
        Record::Judgment(JudgmentRec {
            run: self.run.clone(),
            round: self.round,
            seed_id,
            role: Role::Judge,
            version: pj.version,
            side: pj.side,
            mode: self.mode,
            group,
            i: pj.i,
            j: pj.j,
            raw: pj.raw,
            parsed: pj.parsed,
        })
    }
}

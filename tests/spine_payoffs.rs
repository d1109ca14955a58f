//! Reward math on hand-made cases: per-pair scores, means with missing verdicts excluded, representatives, and
//! whole rounds played with hand-scripted judges whose verdicts give known rewards (also with
//! `optimistic = false` and with `faithfulness_gate = false`).

mod spine_common;
use sparring_engine::payoff::{all_pairs, pair_score, pairwise_rewards, representative};
use sparring_engine::record::Record;
use sparring_engine::*;
use spine_common::*;
use std::sync::Arc;

#[test]
fn pair_scores_are_win_tie_loss() {
    assert_eq!(pair_score(7.0, 3.0), Some((1.0, 0.0)));
    assert_eq!(pair_score(3.0, 7.0), Some((0.0, 1.0)));
    assert_eq!(pair_score(5.0, 5.0), Some((0.5, 0.5)));
    assert_eq!(pair_score(f64::NAN, 5.0), None);
}

#[test]
fn rewards_are_means_over_pairs_missing_excluded() {
    assert_eq!(all_pairs(&[0, 2, 3]), vec![(0, 2), (0, 3), (2, 3)]);
    // 3 members: 0 beats 1, 0 ties 2, verdict (1,2) missing.
    let r = pairwise_rewards(
        3,
        [
            (0, 1, Some((9.0, 1.0))),
            (0, 2, Some((4.0, 4.0))),
            (1, 2, None),
        ],
    );
    assert_eq!(r, vec![Some(0.75), Some(0.0), Some(0.5)]);
    // A member without any valid pair has no reward (not zero).
    let r = pairwise_rewards(3, [(0, 1, Some((1.0, 2.0))), (0, 2, None), (1, 2, None)]);
    assert_eq!(r, vec![Some(0.0), Some(1.0), None]);
    // Four members, all pairs: 1 wins all, 3 loses all, 0 and 2 tie each other.
    let j = vec![
        (0, 1, Some((0.0, 1.0))),
        (0, 2, Some((0.5, 0.5))),
        (0, 3, Some((1.0, 0.0))),
        (1, 2, Some((1.0, 0.0))),
        (1, 3, Some((1.0, 0.0))),
        (2, 3, Some((1.0, 0.0))),
    ];
    assert_eq!(
        pairwise_rewards(4, &j),
        vec![Some(0.5), Some(1.0), Some(0.5), Some(0.0)]
    );
}

#[test]
fn representative_is_best_or_first() {
    assert_eq!(representative(&[Some(0.2), Some(0.9), Some(0.9)], true), 1);
    assert_eq!(representative(&[None, Some(0.1)], true), 1);
    assert_eq!(representative(&[Some(0.2), Some(0.9)], false), 0);
    // Not optimistic: the first response with a verdict; response 0 when none has one.
    assert_eq!(representative(&[None, Some(0.1), Some(0.9)], false), 1);
    assert_eq!(representative(&[None, None], false), 0);
}

/// Attacker: echoes the seed in `<prompt>` for a0, adds "FLIP" for a1, malformed a2.
struct Echo;
impl Policy for Echo {
    fn generate(&mut self, reqs: &[GenRequest]) -> Result<Vec<Vec<Generation>>, RoleError> {
        Ok(reqs
            .iter()
            .map(|r| {
                (0..r.n)
                    .map(|i| match i {
                        0 => Generation {
                            text: format!("<prompt>{}</prompt>", r.input),
                            parsed: Some(r.input.clone()),
                            tokens: 1,
                            logprobs: Vec::new(),
                        },
                        1 => Generation {
                            text: format!("<prompt>FLIP {}</prompt>", r.input),
                            parsed: Some(format!("FLIP {}", r.input)),
                            tokens: 1,
                            logprobs: Vec::new(),
                        },
                        _ => Generation {
                            text: "<prompt>oops".into(),
                            parsed: None,
                            tokens: 1,
                            logprobs: Vec::new(),
                        },
                    })
                    .collect()
            })
            .collect())
    }
}

/// Defender: answer i is "ans<i>" (+ " FLIP" when the prompt has FLIP).
struct Answers;
impl Policy for Answers {
    fn generate(&mut self, reqs: &[GenRequest]) -> Result<Vec<Vec<Generation>>, RoleError> {
        Ok(reqs
            .iter()
            .map(|r| {
                (0..r.n)
                    .map(|i| {
                        Generation::plain(if r.input.starts_with("FLIP") {
                            format!("ans{i} FLIP")
                        } else {
                            format!("ans{i}")
                        })
                    })
                    .collect()
            })
            .collect())
    }
}

/// Judge: every parsed rewrite is faithful; compare scores = answer index (higher wins), except that the pair
/// (ans0, ans2) is unparseable (or, with `nan`, parses to a NaN score); attacker-side answers with FLIP win.
struct Scripted {
    nan: bool,
}
fn idx(s: &str) -> f64 {
    s.trim_start_matches("ans")
        .split(' ')
        .next()
        .and_then(|x| x.parse().ok())
        .unwrap_or(-1.0)
}
impl Judge for Scripted {
    fn faithful(&mut self, reqs: &[FaithRequest]) -> Result<Vec<Verdict<bool>>, RoleError> {
        Ok(reqs
            .iter()
            .map(|_| Verdict::new("<answer>True</answer>", Some(true)))
            .collect())
    }
    fn compare(&mut self, reqs: &[PairRequest]) -> Result<Vec<Verdict<(f64, f64)>>, RoleError> {
        Ok(reqs
            .iter()
            .map(|r| match r.goal {
                Goal::HarmfulCompliance | Goal::OverRefusal => {
                    let s = |x: &str| if x.contains("FLIP") { 1.0 } else { 0.0 };
                    Verdict::new("att", Some((s(&r.a), s(&r.b))))
                }
                _ => {
                    if idx(&r.a) == 0.0 && idx(&r.b) == 2.0 {
                        if self.nan {
                            Verdict::new("A: NaN, B: 2", Some((f64::NAN, 2.0)))
                        } else {
                            Verdict::new("garbage", None)
                        }
                    } else {
                        Verdict::new("def", Some((idx(&r.a), idx(&r.b))))
                    }
                }
            })
            .collect())
    }
    fn complied(&mut self, reqs: &[LabelRequest]) -> Result<Vec<Verdict<bool>>, RoleError> {
        Ok(flip_labels(reqs))
    }
}

/// The test judges' compliance labels: a response complied when it carries `FLIP`.
fn flip_labels(reqs: &[LabelRequest]) -> Vec<Verdict<bool>> {
    reqs.iter()
        .map(|r| Verdict::new("x", Some(r.response.contains("FLIP"))))
        .collect()
}

/// A test kind for `role`, without parameters.
fn info(kind: &str, role: Role) -> KindInfo {
    KindInfo {
        kind: kind.into(),
        about: "test".into(),
        roles: vec![role],
        params: None,
        check: Arc::new(|_, _| Ok(())),
    }
}

fn registry(nan: bool) -> Registry {
    let mut r = Registry::new();
    r.add_policy(
        info("echo", Role::Attacker),
        Arc::new(|_, _| Ok(Box::new(Echo))),
    );
    r.add_policy(
        info("answers", Role::Defender),
        Arc::new(|_, _| Ok(Box::new(Answers))),
    );
    r.add_judge(
        info("scripted", Role::Judge),
        Arc::new(move |_, _| Ok(Box::new(Scripted { nan }))),
    );
    r
}

/// Judge for the `optimistic = false` and `faithfulness_gate = false` rounds. Scores are answer indexes on both
/// sides (the attacker side reads its representatives' indexes, FLIP or not). With `unfaithful_flip`, a rewrite
/// with FLIP is unfaithful; with `unjudged_flip_ans0`, every defender pair with ans0 of a FLIP rewrite is
/// unparseable, so that ans0 has no reward there.
#[derive(Clone, Copy)]
struct Quirky {
    unfaithful_flip: bool,
    unjudged_flip_ans0: bool,
}
impl Judge for Quirky {
    fn faithful(&mut self, reqs: &[FaithRequest]) -> Result<Vec<Verdict<bool>>, RoleError> {
        Ok(reqs
            .iter()
            .map(|r| {
                if self.unfaithful_flip && r.rewrite.starts_with("FLIP") {
                    Verdict::new("<answer>False</answer>", Some(false))
                } else {
                    Verdict::new("<answer>True</answer>", Some(true))
                }
            })
            .collect())
    }
    fn compare(&mut self, reqs: &[PairRequest]) -> Result<Vec<Verdict<(f64, f64)>>, RoleError> {
        Ok(reqs
            .iter()
            .map(|r| {
                let defender = !matches!(r.goal, Goal::HarmfulCompliance | Goal::OverRefusal);
                let flip_ans0 = |x: &str| x.contains("FLIP") && idx(x) == 0.0;
                if defender && self.unjudged_flip_ans0 && (flip_ans0(&r.a) || flip_ans0(&r.b)) {
                    Verdict::new("garbage", None)
                } else {
                    Verdict::new("idx", Some((idx(&r.a), idx(&r.b))))
                }
            })
            .collect())
    }
    fn complied(&mut self, reqs: &[LabelRequest]) -> Result<Vec<Verdict<bool>>, RoleError> {
        Ok(flip_labels(reqs))
    }
}

/// One round of `one_seed_scenario` with the `Quirky` judge and the `--set` overrides; its records, after checking
/// that replay recomputes the same rewards.
fn quirky_round(test: &str, judge: Quirky, overrides: &[&str]) -> Option<Vec<Record>> {
    let sh = shared_or_skip(test)?;
    let dir = tmpdir(test);
    let f = write_scenario(&dir, &one_seed_scenario(&sh));
    let mut reg = registry(false);
    reg.add_judge(
        info("scripted", Role::Judge),
        Arc::new(move |_, _| Ok(Box::new(judge))),
    );
    let overrides: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
    let loaded = scenario::load(&f, &overrides, &reg).unwrap();
    let out = dir.join("run");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(run::run(&loaded, &reg, &out, false, &mut |_| {}))
        .unwrap();
    let re = replay::recompute(&out).unwrap();
    assert!(re.mismatches.is_empty(), "{:?}", re.mismatches);
    let log = out.join("episodes.jsonl");
    let text = read(&log);
    let recs = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // A representative other than the one its responses' rewards give is caught by replay.
    let tampered = text.replacen("\"representative\":1", "\"representative\":0", 1);
    if tampered != text {
        std::fs::write(&log, tampered).unwrap();
        let re = replay::recompute(&out).unwrap();
        assert!(
            re.mismatches.iter().any(|m| m.contains("representative")),
            "{:?}",
            re.mismatches
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    Some(recs)
}

fn rewrites(recs: &[Record]) -> Vec<&record::RewriteRec> {
    recs.iter()
        .filter_map(|r| match r {
            Record::Rewrite(x) => Some(x),
            _ => None,
        })
        .collect()
}

/// (attack key, reward) of each defender response, in order.
fn responses(recs: &[Record]) -> Vec<(String, Option<f64>)> {
    recs.iter()
        .filter_map(|r| match r {
            Record::Response(x) => Some((x.attack_key.clone(), x.reward)),
            _ => None,
        })
        .collect()
}

/// `optimistic = false`: a rewrite is represented by its first response with a verdict. Every defender verdict on
/// ans0 of the FLIP rewrite a1 is unparseable, so a1 is represented by ans1, which beats a0's ans0; response 0
/// (ans0 against ans0) would have made it a tie.
#[test]
fn a_non_optimistic_rewrite_is_represented_by_its_first_response_with_a_verdict() {
    let judge = Quirky {
        unfaithful_flip: false,
        unjudged_flip_ans0: true,
    };
    let Some(recs) = quirky_round(
        "a_non_optimistic_rewrite_is_represented_by_its_first_response_with_a_verdict",
        judge,
        &["game.optimistic=false"],
    ) else {
        return;
    };
    // a0: pairs (0,1) 1 wins, (0,2) 2 wins, (1,2) 2 wins; a1: only (1,2) parsed, 2 wins; ans0 has no reward.
    let rewards: Vec<Option<f64>> = responses(&recs).into_iter().map(|r| r.1).collect();
    assert_eq!(
        rewards,
        vec![Some(0.0), Some(0.5), Some(1.0), None, Some(0.0), Some(1.0)]
    );
    let att: Vec<(Option<usize>, Option<f64>)> = rewrites(&recs)
        .iter()
        .map(|x| (x.representative, x.reward))
        .collect();
    assert_eq!(
        att,
        vec![
            (Some(0), Some(0.0)),
            (Some(1), Some(1.0)),
            (None, Some(-1.0))
        ]
    );
}

/// `faithfulness_gate = false`: the judge is not asked, and a rewrite it would call unfaithful is answered and
/// judged like any other; with the gate, the same rewrite gets the error reward and no defender rollouts.
#[test]
fn without_the_faithfulness_gate_an_unfaithful_rewrite_is_answered_and_rewarded() {
    let test = "without_the_faithfulness_gate_an_unfaithful_rewrite_is_answered_and_rewarded";
    let judge = Quirky {
        unfaithful_flip: true,
        unjudged_flip_ans0: false,
    };
    let Some(gated) = quirky_round(test, judge, &[]) else {
        return;
    };
    let Some(open) = quirky_round(test, judge, &["payoffs.faithfulness_gate=false"]) else {
        return;
    };
    let a1 = |recs: &[Record]| {
        let rw = rewrites(recs)[1].clone();
        assert!(rw.parsed.as_deref().is_some_and(|p| p.starts_with("FLIP")));
        let answered: Vec<Option<f64>> = responses(recs)
            .into_iter()
            .filter(|(k, _)| *k == rw.key)
            .map(|r| r.1)
            .collect();
        (rw, answered)
    };
    // Gated: unfaithful, invalid, the error reward, unanswered.
    let (rw, answered) = a1(&gated);
    assert_eq!(
        (rw.faithful, rw.valid, rw.reward, rw.representative),
        (Some(false), false, Some(-1.0), None)
    );
    assert!(answered.is_empty(), "{answered:?}");
    // Not gated: no verdict asked, valid, three answers rewarded, and a judged reward: the representatives (ans2
    // of a0 and of a1, optimistic) tie.
    let (rw, answered) = a1(&open);
    assert_eq!(
        (rw.faithful, rw.faithful_raw.clone(), rw.valid),
        (None, None, true)
    );
    assert_eq!(answered, vec![Some(0.0), Some(0.5), Some(1.0)]);
    assert_eq!((rw.representative, rw.reward), (Some(2), Some(0.5)));
    assert_eq!(rewrites(&open)[0].reward, Some(0.5));
}

#[test]
fn a_round_gets_the_hand_computed_rewards() {
    hand_computed_round("a_round_gets_the_hand_computed_rewards", false);
}

/// A judge's NaN score is a missing verdict: same rewards, and the round's records (which hold no NaN: JSON has
/// none) are written and read back instead of failing the commit.
#[test]
fn a_nan_judge_score_counts_as_missing() {
    hand_computed_round("a_nan_judge_score_counts_as_missing", true);
}

/// One seed, three rewrites and three answers each, with the test's own kinds (`echo`, `answers`, `scripted`).
fn one_seed_scenario(sh: &std::path::Path) -> String {
    let text = scenario(sh, 1, "")
        .replace("responses_per_attack = 2", "responses_per_attack = 3")
        .replace("seeds_per_round = 6", "seeds_per_round = 1")
        .replace(
            "kind = \"scripted-template\"\nmalformed_rate = 0.1",
            "kind = \"echo\"",
        )
        .replace(
            "kind = \"scripted-rules\"\nflip_rate = 0.2",
            "kind = \"answers\"",
        )
        .replace("kind = \"refusal-prefix\"", "kind = \"scripted\"")
        .replace("[[data.eval]]", "[[data.unused]]");
    text.split("[[data.unused]]").next().unwrap().to_string()
        + "[attacker]\nkind = \"echo\"\n[defender]\nkind = \"answers\"\n[judge]\nkind = \"scripted\"\n"
}

/// Roles start together: a role that cannot be built fails the start with its name, and with several failing, the
/// first in slot order (attacker, defender, judge) is the one reported, whichever thread failed first.
#[test]
fn a_role_that_cannot_be_built_fails_the_start_with_its_name() {
    let Some(sh) = shared_or_skip("a_role_that_cannot_be_built_fails_the_start_with_its_name")
    else {
        return;
    };
    let dir = tmpdir("payoff-build-fails");
    let f = write_scenario(&dir, &one_seed_scenario(&sh));
    let mut reg = registry(false);
    reg.add_policy(
        info("answers", Role::Defender),
        Arc::new(|_, _| Err(RoleError::failed("no weights in /nowhere/model.gguf"))),
    );
    reg.add_judge(
        info("scripted", Role::Judge),
        Arc::new(|_, _| panic!("the judge's build panics")),
    );
    let loaded = scenario::load(&f, &[], &reg).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    for _ in 0..5 {
        let out = dir.join("run");
        let _ = std::fs::remove_dir_all(&out);
        let Err(err) = rt.block_on(run::run(&loaded, &reg, &out, false, &mut |_| {})) else {
            panic!("the start fails");
        };
        let msg = err.to_string();
        assert!(
            msg.contains("defender") && msg.contains("no weights in /nowhere/model.gguf"),
            "{msg}"
        );
    }
}

fn hand_computed_round(test: &str, nan: bool) {
    let Some(sh) = shared_or_skip(test) else {
        return;
    };
    let dir = tmpdir(if nan {
        "payoff-round-nan"
    } else {
        "payoff-round"
    });
    let f = write_scenario(&dir, &one_seed_scenario(&sh));
    let reg = registry(nan);
    let loaded = scenario::load(&f, &[], &reg).unwrap();
    let out = dir.join("run");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(run::run(&loaded, &reg, &out, false, &mut |_| {}))
        .unwrap();
    let recs: Vec<Record> = read(&out.join("episodes.jsonl"))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // Defender, D = 3 answers ans0..ans2 per valid rewrite; pairs (0,1): 1 wins, (0,2): missing, (1,2): 2 wins.
    // ans0: 0/1 = 0; ans1: (1 + 0)/2 = 0.5; ans2: 1/1 = 1.
    let def: Vec<Option<f64>> = recs
        .iter()
        .filter_map(|r| {
            if let Record::Response(x) = r {
                Some(x.reward)
            } else {
                None
            }
        })
        .collect();
    assert_eq!(
        def,
        vec![
            Some(0.0),
            Some(0.5),
            Some(1.0),
            Some(0.0),
            Some(0.5),
            Some(1.0)
        ]
    );
    // Attacker: a0 and a1 valid, a2 malformed (−1). Representatives: best defender response = ans2 for both;
    // the judge prefers the FLIP one, so a1 wins the only pair: a0 = 0, a1 = 1.
    let att: Vec<(Option<f64>, bool, Option<usize>)> = recs
        .iter()
        .filter_map(|r| {
            if let Record::Rewrite(x) = r {
                Some((x.reward, x.valid, x.representative))
            } else {
                None
            }
        })
        .collect();
    assert_eq!(
        att,
        vec![
            (Some(0.0), true, Some(2)),
            (Some(1.0), true, Some(2)),
            (Some(-1.0), false, None)
        ]
    );
    // Replay recomputes the same rewards and metrics.
    let re = replay::recompute(&out).unwrap();
    assert!(re.mismatches.is_empty(), "{:?}", re.mismatches);
    let m = &re.rounds[0].1;
    assert_eq!(m["reward/attacker"], 0.0);
    assert_eq!(m["reward/defender"], 0.5);
    assert_eq!(m["faithfulness_rate"], 2.0 / 3.0);
    assert_eq!(m["judge/missing"], 2.0);
}

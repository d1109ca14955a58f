//! Reward math on hand-made cases: per-pair scores, means with missing verdicts excluded, representatives, and a
//! whole round played with a hand-scripted judge whose verdicts give known rewards.

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
                        },
                        1 => Generation {
                            text: format!("<prompt>FLIP {}</prompt>", r.input),
                            parsed: Some(format!("FLIP {}", r.input)),
                            tokens: 1,
                        },
                        _ => Generation {
                            text: "<prompt>oops".into(),
                            parsed: None,
                            tokens: 1,
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
        Ok(reqs
            .iter()
            .map(|r| Verdict::new("x", Some(r.response.contains("FLIP"))))
            .collect())
    }
}

/// A test kind for `role`, without parameters.
fn info(kind: &str, role: Role) -> KindInfo {
    KindInfo {
        kind: kind.into(),
        about: "test".into(),
        roles: vec![role],
        params: vec![],
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
        let Err(err) = rt.block_on(game::run(&loaded, &reg, &out, false, &mut |_| {})) else {
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
    rt.block_on(game::run(&loaded, &reg, &out, false, &mut |_| {}))
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

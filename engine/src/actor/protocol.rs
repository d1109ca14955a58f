//! The role protocol: one type per request a role serves, each naming the type of its answer, so a caller gets
//! the answer's type at compile time and no reply is unpacked at run time. Requests and answers are plain serde
//! data (they can cross a process or a node); [`Request::serve`] runs one on the implementation a role's thread
//! owns ([`Implementation`]).
//!
//! | request | served by | answer |
//! |---|---|---|
//! | [`Generate`] | attacker, defender | [`Generated`]: samples per request, the policy's version |
//! | [`Learn`] | attacker, defender | [`Learned`]: the update's report, version and saved state |
//! | [`Faithful`], [`Complied`] | judge | [`Judged<bool>`] |
//! | [`Compare`] | judge | [`Judged<(f64, f64)>`] (a pair's preference) |
//! | [`Score`] | judge | [`Judged<f64>`] |
//! | [`Save`] | attacker, defender, judge | [`Saved`]: the state, which becomes the role's restore point |
//! | [`Load`] | attacker, defender, judge | `()`; the loaded state becomes the restore point |
//! | [`Commit`] | replay | `()`: the round's states and records are durable |
//!
//! Requests that only read (generate, judge) also travel together as one call, answered in order: a pair
//! `(A, B)` or an `Option<A>` of them is itself a request ([`Read`]), so batching state changes does not compile.
//!
//! To a role on another node a request travels as its [`Part`]s (a pair is two, an absent read none), which the
//! node serves one by one with [`serve_part`]; the answer is decoded from theirs ([`Request::decode`]).

use crate::cluster::RemoteRole;
use crate::cluster::wire::{self, Part, shared_bytes};
use crate::replay::{CommitJob, ReplayLog};
use crate::roles::{
    FaithRequest, GenRequest, Generation, Group, Judge, LabelRequest, LearnReport, PairRequest,
    PointRequest, Policy, RoleError, Verdict,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// A request to a role, and the type of its answer.
pub trait Request: Serialize + DeserializeOwned + Send + Sync + 'static {
    type Answer: Serialize + DeserializeOwned + Send + 'static;
    /// The request's name in errors (`the judge failed 3 times on the same \`compare\` request`).
    const NAME: &'static str;

    /// Serve the request on a role's implementation (on the role's own thread).
    fn serve(&self, imp: &mut Implementation) -> Result<Self::Answer, RoleError>;

    /// A state the role now stands at (saved, learned or loaded): a restarted worker is restored to it.
    fn restore_point(&self, _answer: &Self::Answer) -> Option<Arc<Vec<u8>>> {
        None
    }

    /// The primitive requests this one is made of, in order, encoded for a role on another node.
    fn encode(&self, parts: &mut Vec<Part>) -> Result<(), String> {
        parts.push(Part::of(Self::NAME, self)?);
        Ok(())
    }

    /// The answer, from the encoded answers of [`Self::encode`]'s parts (in order).
    fn decode(&self, answers: &mut dyn Iterator<Item = Vec<u8>>) -> Result<Self::Answer, String> {
        let bytes = answers
            .next()
            .ok_or_else(|| format!("no answer to `{}`", Self::NAME))?;
        wire::decode(&bytes, &format!("the answer to `{}`", Self::NAME))
    }
}

/// Serve one encoded primitive request on `imp` (a node's role thread) and encode its answer. Replay requests
/// never cross: the replay log stays with the game.
pub fn serve_part(part: &Part, imp: &mut Implementation) -> Result<Vec<u8>, RoleError> {
    fn serve<R: Request>(body: &[u8], imp: &mut Implementation) -> Result<Vec<u8>, RoleError> {
        let request: R =
            wire::decode(body, &format!("a `{}` request", R::NAME)).map_err(RoleError::Failed)?;
        let answer = request.serve(imp)?;
        wire::encode(&answer).map_err(RoleError::Failed)
    }
    let body = &part.body;
    match part.name.as_str() {
        Generate::NAME => serve::<Generate>(body, imp),
        Learn::NAME => serve::<Learn>(body, imp),
        Faithful::NAME => serve::<Faithful>(body, imp),
        Compare::NAME => serve::<Compare>(body, imp),
        Score::NAME => serve::<Score>(body, imp),
        Complied::NAME => serve::<Complied>(body, imp),
        Save::NAME => serve::<Save>(body, imp),
        Load::NAME => serve::<Load>(body, imp),
        other => Err(RoleError::Unsupported(format!(
            "`{other}` is not served by a role on a node"
        ))),
    }
}

/// A request that changes nothing a restart would restore (generation and judging): these may travel together.
pub trait Read: Request {}

/// What a role's thread runs: a policy (attacker or defender), a judge, the replay log, or a role on another node
/// (whose requests the thread forwards).
pub enum Implementation {
    Policy(Box<dyn Policy>),
    Judge(Box<dyn Judge>),
    Replay(ReplayLog),
    Remote(RemoteRole),
}

impl Implementation {
    fn what(&self) -> &'static str {
        match self {
            Implementation::Policy(_) => "a policy",
            Implementation::Judge(_) => "a judge",
            Implementation::Replay(_) => "the replay log",
            Implementation::Remote(_) => "a role on another node",
        }
    }

    fn policy(&mut self, request: &str) -> Result<&mut dyn Policy, RoleError> {
        match self {
            Implementation::Policy(p) => Ok(p.as_mut()),
            other => Err(unsupported(request, other)),
        }
    }

    fn judge(&mut self, request: &str) -> Result<&mut dyn Judge, RoleError> {
        match self {
            Implementation::Judge(j) => Ok(j.as_mut()),
            other => Err(unsupported(request, other)),
        }
    }
}

fn unsupported(request: &str, imp: &Implementation) -> RoleError {
    RoleError::Unsupported(format!("`{request}` sent to {}", imp.what()))
}

/// An implementation's answers, one per request, or an error naming the request.
fn one_each<T>(what: &str, v: Vec<T>, n: usize) -> Result<Vec<T>, RoleError> {
    if v.len() == n {
        Ok(v)
    } else {
        Err(RoleError::failed(format!(
            "{what}: {} answers for {n} requests",
            v.len()
        )))
    }
}

/// Sample `n` outputs per request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Generate(pub Vec<GenRequest>);

/// The samples of a [`Generate`], per request, and the policy's version.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Generated {
    pub gens: Vec<Vec<Generation>>,
    pub version: u64,
}

impl Request for Generate {
    type Answer = Generated;
    const NAME: &'static str = "generate";

    fn serve(&self, imp: &mut Implementation) -> Result<Generated, RoleError> {
        let p = imp.policy(Self::NAME)?;
        let gens = one_each(Self::NAME, p.generate(&self.0)?, self.0.len())?;
        for (g, r) in gens.iter().zip(&self.0) {
            if g.len() != r.n {
                return Err(RoleError::failed(format!(
                    "generate `{}`: {} samples, {} asked",
                    r.key,
                    g.len(),
                    r.n
                )));
            }
        }
        Ok(Generated {
            gens,
            version: p.version(),
        })
    }
}

impl Read for Generate {}

/// Learn from these groups, then save: the saved state becomes the role's restore point.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Learn(pub Vec<Group>);

/// The answer to a [`Learn`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Learned {
    pub report: LearnReport,
    pub version: u64,
    /// Shared, not copied: it is also the role's restore point.
    #[serde(with = "shared_bytes")]
    pub state: Arc<Vec<u8>>,
}

impl Request for Learn {
    type Answer = Learned;
    const NAME: &'static str = "learn";

    fn serve(&self, imp: &mut Implementation) -> Result<Learned, RoleError> {
        let p = imp.policy(Self::NAME)?;
        let report = p.learn(&self.0)?;
        Ok(Learned {
            report,
            version: p.version(),
            state: Arc::new(p.save()?),
        })
    }

    fn restore_point(&self, answer: &Learned) -> Option<Arc<Vec<u8>>> {
        Some(Arc::clone(&answer.state))
    }
}

/// A judge's verdicts, one per request, and its version.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Judged<T> {
    pub verdicts: Vec<Verdict<T>>,
    pub version: u64,
}

/// The judge requests: each calls one `Judge` method on its list and answers one verdict per request.
macro_rules! judge_request {
    ($(#[$doc:meta])* $name:ident($req:ty) -> $value:ty, $method:ident, $label:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Serialize, Deserialize)]
        pub struct $name(pub Vec<$req>);

        impl Request for $name {
            type Answer = Judged<$value>;
            const NAME: &'static str = $label;

            fn serve(&self, imp: &mut Implementation) -> Result<Judged<$value>, RoleError> {
                let j = imp.judge(Self::NAME)?;
                Ok(Judged {
                    verdicts: one_each(Self::NAME, j.$method(&self.0)?, self.0.len())?,
                    version: j.version(),
                })
            }
        }

        impl Read for $name {}
    };
}

judge_request!(
    /// Is each rewrite faithful to its seed's intent?
    Faithful(FaithRequest) -> bool, faithful, "faithful"
);
judge_request!(
    /// Which of two responses does the judge prefer (a score for each)?
    Compare(PairRequest) -> (f64, f64), compare, "compare"
);
judge_request!(
    /// A score for each response on its own.
    Score(PointRequest) -> f64, score, "score"
);
judge_request!(
    /// Did each response comply with its request?
    Complied(LabelRequest) -> bool, complied, "complied"
);

/// Save the role's state without learning.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Save;

/// A saved state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Saved {
    #[serde(with = "shared_bytes")]
    pub state: Arc<Vec<u8>>,
}

impl Request for Save {
    type Answer = Saved;
    const NAME: &'static str = "save";

    fn serve(&self, imp: &mut Implementation) -> Result<Saved, RoleError> {
        let state = match imp {
            Implementation::Policy(p) => p.save()?,
            Implementation::Judge(j) => j.save()?,
            other => return Err(unsupported(Self::NAME, other)),
        };
        Ok(Saved {
            state: Arc::new(state),
        })
    }

    fn restore_point(&self, answer: &Saved) -> Option<Arc<Vec<u8>>> {
        Some(Arc::clone(&answer.state))
    }
}

/// Replace the role's state with these saved bytes (`Policy::load` / `Judge::load`); on success they become its
/// restore point. One built model serves many checkpoints this way.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Load(#[serde(with = "shared_bytes")] pub Arc<Vec<u8>>);

impl Request for Load {
    type Answer = ();
    const NAME: &'static str = "load";

    fn serve(&self, imp: &mut Implementation) -> Result<(), RoleError> {
        match imp {
            Implementation::Policy(p) => p.load(&self.0),
            Implementation::Judge(j) => j.load(&self.0),
            other => Err(unsupported(Self::NAME, other)),
        }
    }

    fn restore_point(&self, _answer: &()) -> Option<Arc<Vec<u8>>> {
        Some(Arc::clone(&self.0))
    }
}

/// Replay only: write the round's state files and records with their commit marker, fsync.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Commit(pub CommitJob);

impl Request for Commit {
    type Answer = ();
    const NAME: &'static str = "commit";

    fn serve(&self, imp: &mut Implementation) -> Result<(), RoleError> {
        match imp {
            Implementation::Replay(log) => log.commit(&self.0),
            other => Err(unsupported(Self::NAME, other)),
        }
    }
}

/// Two reads in one call, answered in order.
impl<A: Read, B: Read> Request for (A, B) {
    type Answer = (A::Answer, B::Answer);
    const NAME: &'static str = "batch";

    fn serve(&self, imp: &mut Implementation) -> Result<Self::Answer, RoleError> {
        Ok((self.0.serve(imp)?, self.1.serve(imp)?))
    }

    fn encode(&self, parts: &mut Vec<Part>) -> Result<(), String> {
        self.0.encode(parts)?;
        self.1.encode(parts)
    }

    fn decode(&self, answers: &mut dyn Iterator<Item = Vec<u8>>) -> Result<Self::Answer, String> {
        Ok((self.0.decode(answers)?, self.1.decode(answers)?))
    }
}

impl<A: Read, B: Read> Read for (A, B) {}

/// A read that may be absent (answered `None` without calling the implementation).
impl<A: Read> Request for Option<A> {
    type Answer = Option<A::Answer>;
    const NAME: &'static str = A::NAME;

    fn serve(&self, imp: &mut Implementation) -> Result<Self::Answer, RoleError> {
        self.as_ref().map(|r| r.serve(imp)).transpose()
    }

    fn encode(&self, parts: &mut Vec<Part>) -> Result<(), String> {
        self.as_ref().map_or(Ok(()), |r| r.encode(parts))
    }

    fn decode(&self, answers: &mut dyn Iterator<Item = Vec<u8>>) -> Result<Self::Answer, String> {
        self.as_ref().map(|r| r.decode(answers)).transpose()
    }
}

impl<A: Read> Read for Option<A> {}

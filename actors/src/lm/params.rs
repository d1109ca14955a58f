//! Whole-module parameter plumbing that works for any Burn [`Module`]: named flat copies of
//! the float parameters, loading them back, and the EMA update.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::{Device, Tensor, TensorData};

use super::LmError;
use super::batch::to_vec_f32;
use super::checkpoint::TensorRecord;

/// Flattened (detached, non-autodiff) float parameters in visit order.
pub fn flat_params<M: Module>(m: &M) -> Vec<Tensor<1>> {
    struct V(Vec<Tensor<1>>);
    impl ModuleVisitor for V {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            let t = p.val().inner();
            let n = t.shape().num_elements();
            self.0.push(t.reshape([n]));
        }
    }
    let mut v = V(Vec::new());
    m.visit(&mut v);
    v.0
}

/// Dotted names (`blocks.0.wqkv`) of the float parameters in visit order.
pub fn param_names<M: Module>(m: &M) -> Vec<String> {
    struct V {
        path: Vec<String>,
        names: Vec<String>,
    }
    impl ModuleVisitor for V {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, _: &Param<Tensor<D>>) {
            self.names.push(self.path.join("."));
        }
    }
    let mut v = V {
        path: Vec::new(),
        names: Vec::new(),
    };
    m.visit(&mut v);
    v.names
}

/// Host copies of every float parameter, named.
pub fn module_records<M: Module>(m: &M) -> Result<Vec<(String, TensorRecord)>, LmError> {
    struct V(Vec<(Vec<usize>, Tensor<1>)>);
    impl ModuleVisitor for V {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            let t = p.val().inner();
            let dims = t.dims().to_vec();
            let n = t.shape().num_elements();
            self.0.push((dims, t.reshape([n])));
        }
    }
    let mut v = V(Vec::new());
    m.visit(&mut v);
    let names = param_names(m);
    names
        .into_iter()
        .zip(v.0)
        .map(|(name, (shape, t))| Ok((name, TensorRecord::new(shape, to_vec_f32(t)?))))
        .collect()
}

/// Replaces every float parameter of `m` with the record of the same name (shapes must match).
/// Parameter ids and gradient settings are kept, so an optimizer keyed on order keeps working.
pub fn load_module_records<M: Module>(
    m: M,
    lookup: &dyn Fn(&str) -> Option<TensorRecord>,
    origin: &str,
) -> Result<M, LmError> {
    struct L<'a> {
        path: Vec<String>,
        lookup: &'a dyn Fn(&str) -> Option<TensorRecord>,
        err: Option<String>,
    }
    impl ModuleMapper for L<'_> {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.path.pop();
        }
        fn map_float<const D: usize>(&mut self, p: Param<Tensor<D>>) -> Param<Tensor<D>> {
            if self.err.is_some() {
                return p;
            }
            let name = self.path.join(".");
            let (id, t, mapper) = p.consume();
            let Some(rec) = (self.lookup)(&name) else {
                self.err = Some(format!("missing tensor `{name}`"));
                return Param::from_mapped_value(id, t, mapper);
            };
            let dims = t.dims();
            if rec.shape != dims.to_vec() {
                self.err = Some(format!(
                    "tensor `{name}` has shape {:?}, the model expects {:?}",
                    rec.shape, dims
                ));
                return Param::from_mapped_value(id, t, mapper);
            }
            let grad = t.is_require_grad();
            let ad = t.is_autodiff();
            let device = t.device();
            let mut new = Tensor::<D>::from_data(TensorData::new(rec.data, dims), &device);
            if ad {
                new = new.autodiff();
            }
            if grad {
                new = new.require_grad();
            }
            Param::from_mapped_value(id, new, mapper)
        }
    }
    let mut l = L {
        path: Vec::new(),
        lookup,
        err: None,
    };
    let out = m.map(&mut l);
    match l.err {
        Some(msg) => Err(LmError::Checkpoint {
            origin: origin.to_string(),
            msg,
        }),
        None => Ok(out),
    }
}

/// Replaces `m`'s float parameters, in visit order, with `f(index, current_flat) -> new_flat`.
/// Autodiff and gradient settings of each parameter are preserved.
pub fn map_flat<M: Module>(m: M, f: &mut dyn FnMut(usize, Tensor<1>) -> Tensor<1>) -> M {
    struct Mp<'a> {
        i: usize,
        f: &'a mut dyn FnMut(usize, Tensor<1>) -> Tensor<1>,
    }
    impl ModuleMapper for Mp<'_> {
        fn map_float<const D: usize>(&mut self, p: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let (id, t, mapper) = p.consume();
            let grad = t.is_require_grad();
            let ad = t.is_autodiff();
            let dims = t.dims();
            let n = t.shape().num_elements();
            let flat = t.inner().reshape([n]);
            let mut new: Tensor<D> = (self.f)(self.i, flat).reshape(dims).inner();
            self.i += 1;
            if ad {
                new = new.autodiff();
            }
            if grad {
                new = new.require_grad();
            }
            Param::from_mapped_value(id, new, mapper)
        }
    }
    m.map(&mut Mp { i: 0, f })
}

/// EMA update `θ_ema ← d·θ_ema + (1−d)·θ`, parameter by parameter (same architecture).
pub fn ema_update<M: Module>(ema: M, policy: &M, decay: f64) -> M {
    let src = flat_params(policy);
    map_flat(ema, &mut |i, e| match src.get(i) {
        Some(p) => {
            let dev = e.device();
            e.mul_scalar(decay) + p.clone().to_device(&dev).mul_scalar(1.0 - decay)
        }
        None => e,
    })
}

/// A plain (non-autodiff, no-grad) deep copy of a module's values on `device`.
pub fn plain_copy<M: Module>(m: &M, device: &Device) -> M {
    map_flat(m.clone(), &mut |_, t| t.to_device(device)).valid()
}

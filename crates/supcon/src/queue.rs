//! A ring buffer of K past keys `(K, D)` and their labels `(K,)` for PaCo/MoCo-style contrast.
//!
//! Per step: build `F = [q; k; queue.keys()]`, `y = [y_q; y_k; queue.labels()]`, compute the loss,
//! then [`LabelledQueue::enqueue`] the (detached) keys. Rows are written in ring order at the write
//! pointer; a batch that runs past row K wraps to row 0, so K need not be a multiple of the batch.
//!
//! Start state: rows drawn from a seeded standard normal and l2-normalised *per row* (the reference
//! normalises along the wrong axis, which leaves rows of arbitrary norm). Their labels are
//! [`QueueInit::Unlabelled`] by default: [`LabelledQueue::UNLABELLED`] = `u32::MAX`, which never
//! equals a class index, so the random rows serve only as negatives (they sit in the denominator)
//! until real keys replace them after K/B steps. [`QueueInit::RandomLabels`] reproduces the
//! reference instead (uniform random class labels: the random rows also act as spurious positives).
//!
//! Checkpoints: [`LabelledQueue::to_tensors`] / [`LabelledQueue::from_tensors`] give a plain tensor
//! map (`{prefix}keys`, `{prefix}labels`, `{prefix}ptr`), and [`LabelledQueue::save`] /
//! [`LabelledQueue::load`] a safetensors file.
//!
//! ```
//! use candle_core::{DType, Device, Tensor};
//! use supcon::{LabelledQueue, QueueInit};
//! let dev = Device::Cpu;
//! let mut queue = LabelledQueue::new(5, 4, QueueInit::Unlabelled, 7, DType::F32, &dev)?;
//! let keys = Tensor::ones((3, 4), DType::F32, &dev)?;
//! queue.enqueue(&keys, &Tensor::new(&[1u32, 2, 3], &dev)?)?;
//! queue.enqueue(&keys, &Tensor::new(&[4u32, 5, 6], &dev)?)?; // rows 3, 4, then 0
//! assert_eq!(queue.labels().to_vec1::<u32>()?, [6, 2, 3, 4, 5]);
//! assert_eq!(queue.ptr(), 1);
//! # Ok::<(), supcon::SupconError>(())
//! ```

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal, Uniform};

use crate::error::{Result, SupconError};
use crate::util::{check_float, labels_u32};

/// How the queue's labels start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QueueInit {
    /// Every start row is labelled [`LabelledQueue::UNLABELLED`]: never a positive.
    #[default]
    Unlabelled,
    /// Uniform random labels in `0..num_classes`, as the reference code does.
    RandomLabels {
        /// Number of classes C.
        num_classes: u32,
    },
}

/// Ring buffer of `(K, D)` keys and `(K,)` u32 labels. See the module docs.
///
/// Not `Clone`: `enqueue` writes in place, so a shallow clone would share (and see) the writes;
/// use [`LabelledQueue::try_clone`] for an independent copy.
#[derive(Debug)]
pub struct LabelledQueue {
    keys: Tensor,
    labels: Tensor,
    ptr: usize,
}

impl LabelledQueue {
    /// Label of a row that holds no real key yet; never equal to a class index.
    pub const UNLABELLED: u32 = u32::MAX;

    /// A queue of `capacity` K rows of dimension `dim` D, float `dtype`, rows l2-normalised draws
    /// of a standard normal seeded by `seed` (the same seed gives the same rows on every device).
    pub fn new(
        capacity: usize,
        dim: usize,
        init: QueueInit,
        seed: u64,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        if capacity == 0 || dim == 0 {
            return Err(SupconError::Config {
                name: if capacity == 0 { "capacity" } else { "dim" },
                value: 0.0,
                reason: "must be >= 1",
            });
        }
        if !dtype.is_float() {
            return Err(SupconError::DType {
                what: "queue dtype",
                expected: "a float dtype",
                got: dtype,
            });
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut keys: Vec<f32> = (0..capacity * dim)
            .map(|_| StandardNormal.sample(&mut rng))
            .collect();
        for row in keys.chunks_mut(dim) {
            let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
            row.iter_mut().for_each(|x| *x /= norm);
        }
        let labels: Vec<u32> = match init {
            QueueInit::Unlabelled => vec![Self::UNLABELLED; capacity],
            QueueInit::RandomLabels { num_classes } => {
                if num_classes == 0 {
                    return Err(SupconError::Config {
                        name: "num_classes",
                        value: 0.0,
                        reason: "must be >= 1",
                    });
                }
                let classes = Uniform::new(0, num_classes).expect("num_classes >= 1");
                (0..capacity).map(|_| classes.sample(&mut rng)).collect()
            }
        };
        Ok(Self {
            keys: Tensor::from_vec(keys, (capacity, dim), device)?.to_dtype(dtype)?,
            labels: Tensor::from_vec(labels, capacity, device)?,
            ptr: 0,
        })
    }

    /// An independent deep copy.
    pub fn try_clone(&self) -> Result<Self> {
        Ok(Self {
            keys: self.keys.copy()?,
            labels: self.labels.copy()?,
            ptr: self.ptr,
        })
    }

    /// Capacity K.
    pub fn capacity(&self) -> usize {
        self.labels.elem_count()
    }

    /// Key dimension D.
    pub fn dim(&self) -> usize {
        self.keys.dims()[1]
    }

    /// `(K, D)` keys, no gradient. The handle shares storage with the queue: `enqueue` overwrites
    /// rows in place, so concatenate (copy) before enqueueing if the old rows are still needed.
    pub fn keys(&self) -> &Tensor {
        &self.keys
    }

    /// `(K,)` u32 labels (`UNLABELLED` for start rows not yet replaced). Shares storage like `keys`.
    pub fn labels(&self) -> &Tensor {
        &self.labels
    }

    /// Row the next enqueued key goes to, in `0..K`.
    pub fn ptr(&self) -> usize {
        self.ptr
    }

    /// Writes `keys: (B, D)` (detached, cast to the queue's dtype) and `labels: (B,)` at the write
    /// pointer, wrapping past row K; the pointer advances by B mod K. With B > K only the last K rows
    /// stay, as if written one by one.
    pub fn enqueue(&mut self, keys: &Tensor, labels: &Tensor) -> Result<()> {
        check_float(keys, "keys")?;
        let (b, d) = keys.dims2().map_err(|_| SupconError::Shape {
            what: "keys",
            expected: format!("(B, {})", self.dim()),
            got: keys.dims().to_vec(),
        })?;
        if d != self.dim() {
            return Err(SupconError::Shape {
                what: "keys",
                expected: format!("(B, {})", self.dim()),
                got: keys.dims().to_vec(),
            });
        }
        let labels = labels_u32(labels, "labels", b)?;
        let k = self.capacity();
        let keys = keys
            .detach()
            .to_device(self.keys.device())?
            .to_dtype(self.keys.dtype())?;
        let labels = labels.to_device(self.labels.device())?;
        // Only the last K rows survive a batch longer than the queue.
        let skip = b.saturating_sub(k);
        let (keys, labels) = (
            keys.narrow(0, skip, b - skip)?,
            labels.narrow(0, skip, b - skip)?,
        );
        let start = (self.ptr + skip) % k;
        let rows = b - skip;
        let first = rows.min(k - start);
        self.write(&keys, &labels, 0, first, start)?;
        if first < rows {
            self.write(&keys, &labels, first, rows - first, 0)?;
        }
        self.ptr = (self.ptr + b) % k;
        Ok(())
    }

    /// Copies rows `from..from + len` of `keys`/`labels` to queue rows `to..to + len`.
    fn write(
        &self,
        keys: &Tensor,
        labels: &Tensor,
        from: usize,
        len: usize,
        to: usize,
    ) -> Result<()> {
        // `contiguous` copies when narrowed or when `keys` is a view of the queue itself, which
        // slice_set refuses.
        let keys = keys.narrow(0, from, len)?.copy()?;
        let labels = labels.narrow(0, from, len)?.copy()?;
        self.keys.slice_set(&keys, 0, to)?;
        self.labels.slice_set(&labels, 0, to)?;
        Ok(())
    }

    /// Tensor map for a checkpoint: `{prefix}keys` `(K, D)`, `{prefix}labels` `(K,)` u32,
    /// `{prefix}ptr` `(1,)` u32.
    pub fn to_tensors(&self, prefix: &str) -> Result<HashMap<String, Tensor>> {
        let ptr = Tensor::new(&[self.ptr as u32], self.labels.device())?;
        Ok(HashMap::from([
            (format!("{prefix}keys"), self.keys.copy()?),
            (format!("{prefix}labels"), self.labels.copy()?),
            (format!("{prefix}ptr"), ptr),
        ]))
    }

    /// Restores a queue from [`Self::to_tensors`]'s map, checking shapes, dtypes and the pointer.
    pub fn from_tensors(
        tensors: &HashMap<String, Tensor>,
        prefix: &str,
        device: &Device,
    ) -> Result<Self> {
        let get = |name: &str| -> Result<(String, Tensor)> {
            let key = format!("{prefix}{name}");
            match tensors.get(&key) {
                Some(t) => Ok((key, t.to_device(device)?)),
                None => Err(SupconError::Checkpoint {
                    key,
                    problem: "is missing".into(),
                }),
            }
        };
        let bad = |key: &str, problem: String| SupconError::Checkpoint {
            key: key.to_string(),
            problem,
        };
        let (keys_key, keys) = get("keys")?;
        let (labels_key, labels) = get("labels")?;
        let (ptr_key, ptr) = get("ptr")?;
        if keys.rank() != 2 || keys.elem_count() == 0 || !keys.dtype().is_float() {
            return Err(bad(
                &keys_key,
                format!(
                    "must be a non-empty (K, D) float tensor, got {:?} {:?}",
                    keys.dims(),
                    keys.dtype()
                ),
            ));
        }
        let k = keys.dim(0)?;
        if labels.dims() != [k] || labels.dtype() != DType::U32 {
            return Err(bad(
                &labels_key,
                format!(
                    "must be ({k},) u32, got {:?} {:?}",
                    labels.dims(),
                    labels.dtype()
                ),
            ));
        }
        if ptr.dims() != [1] || ptr.dtype() != DType::U32 {
            return Err(bad(
                &ptr_key,
                format!("must be (1,) u32, got {:?} {:?}", ptr.dims(), ptr.dtype()),
            ));
        }
        let ptr = ptr.to_vec1::<u32>()?[0] as usize;
        if ptr >= k {
            return Err(bad(
                &ptr_key,
                format!("= {ptr} is not a row of a queue of {k}"),
            ));
        }
        Ok(Self {
            // Own copies, so the loaded map and the queue never share storage.
            keys: keys.copy()?,
            labels: labels.copy()?,
            ptr,
        })
    }

    /// Writes the queue to a safetensors file (keys `{prefix}keys`, `{prefix}labels`, `{prefix}ptr`).
    pub fn save(&self, path: impl AsRef<Path>, prefix: &str) -> Result<()> {
        let path = path.as_ref();
        candle_core::safetensors::save(&self.to_tensors(prefix)?, path).map_err(|source| {
            SupconError::File {
                path: path.to_path_buf(),
                source,
            }
        })
    }

    /// Reads a queue written by [`Self::save`].
    pub fn load(path: impl AsRef<Path>, prefix: &str, device: &Device) -> Result<Self> {
        let path = path.as_ref();
        let tensors =
            candle_core::safetensors::load(path, device).map_err(|source| SupconError::File {
                path: path.to_path_buf(),
                source,
            })?;
        Self::from_tensors(&tensors, prefix, device)
    }
}

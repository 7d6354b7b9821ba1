//! SPMix training: configuration, the training methods (CE, class-balanced CE, PaCo, SPMix), the
//! training loop with checkpoints and exact resume, evaluation metrics and reports.
//! The binary `trainer` (src/main.rs) is glue over these modules.

pub mod atomic_file;
pub mod augment;
pub mod checkpoint;
pub mod config;
pub mod ensure_split;
pub mod epoch_record;
pub mod evaluate;
pub mod evaluate_run;
pub mod init;
pub mod methods;
pub mod metrics;
pub mod plots;
pub mod predict_csv;
pub mod pretrained;
pub mod report;
pub mod report_error;
pub mod roc_auc;
pub mod run_dir;
pub mod run_lock;
pub mod schedule;
pub mod step_trace;
pub mod train;
pub mod visualize;

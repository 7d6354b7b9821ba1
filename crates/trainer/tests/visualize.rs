//! `trainer visualize` on a tiny synthetic split: the ratio grids the Fig. 4 sheet draws are the
//! patchmix ratio op's output for the same step's saliency and the training's seed, both in the
//! sheet's data and in the PNG's pixels; both figures are written by the binary, reproducibly, and
//! a failed command leaves an earlier figure untouched.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use image::GenericImageView;
use trainer::config::Config;
use trainer::visualize::mix_sheet::{self, VARIANTS, VIEW};
use trainer::visualize::mix_sheet_draw::{ratio_colour, write_png, SheetLayout};

/// A tiny SPMix config over a synthetic split prepared in `tmp`; returns (config file, config).
fn tiny_split(tmp: &Path) -> (PathBuf, Config) {
    let text = common::tiny_config_text(&tmp.join("data"), &tmp.join("runs"), "spmix", 1);
    let path = tmp.join("c.toml");
    std::fs::write(&path, &text).unwrap();
    let cfg = Config::from_file(&path, &[]).unwrap();
    trainer::ensure_split::ensure_split(&cfg.data).unwrap();
    (path, cfg)
}

#[test]
fn the_drawn_ratio_grid_is_the_ratio_ops_output() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, mut cfg) = tiny_split(tmp.path());
    cfg.run.seed = 5;
    let sheet = mix_sheet::build(&cfg, 3).unwrap();
    assert_eq!(sheet.pairs.len(), 3);

    let train = std::sync::Arc::new(
        dataset::data_set::DataSet::open(&cfg.data.split_dir, "train").unwrap(),
    );
    let loader = mix_sheet::spmix_loader(&cfg, train).unwrap();
    for pair in &sheet.pairs {
        let step = loader.load_step(pair.epoch, pair.step).unwrap();
        let (fg, bg) = mix_sheet::foreground_background(&cfg, &step).unwrap();
        assert_eq!(fg.indices[pair.slot], pair.foreground.index);
        assert_eq!(bg.indices[pair.slot], pair.background.index);
        let seed =
            trainer::methods::spmix::ratio_seed(cfg.run.seed, pair.epoch as usize, pair.step, VIEW);
        for (v, variant) in VARIANTS.iter().enumerate() {
            let direct = patchmix::mixing_ratio(
                variant.mode,
                mix_sheet::view_saliency(fg).unwrap(),
                mix_sheet::view_saliency(bg).unwrap(),
                &cfg.mix.ratio_config(),
                seed,
            )
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
            assert_eq!(
                pair.grids[v].values, direct[pair.slot],
                "{} of step {} slot {}",
                variant.title, pair.step, pair.slot
            );
        }
        // The per-sample variants are constant over the patches, random per patch is not.
        assert_eq!(spread(&pair.grids[1]), 0.0);
        assert_eq!(spread(&pair.grids[3]), 0.0);
        assert!(spread(&pair.grids[2]) > 0.0);
    }
    // SPMix's ratios follow the saliency patch by patch (a single pair may clip every patch at
    // alpha, not all of them).
    assert!(sheet.pairs.iter().any(|p| spread(&p.grids[0]) > 0.0));

    // The PNG shows exactly these grids: each patch's colour is its ratio's colour.
    let out = tmp.path().join("sheet.png");
    write_png(&sheet, &out).unwrap();
    let png = image::open(&out).unwrap().to_rgb8();
    let layout = SheetLayout::for_sheet(&sheet);
    assert_eq!(png.dimensions(), layout.size());
    let (floor, alpha) = (cfg.mix.floor, cfg.mix.alpha);
    for (i, pair) in sheet.pairs.iter().enumerate() {
        for (v, grid) in pair.grids.iter().enumerate() {
            for r in 0..grid.rows {
                for c in 0..grid.cols {
                    let ((x, y), _) = layout.patch_rect(i, v, r, c);
                    let got = png.get_pixel(x as u32 + 2, y as u32 + 2).0;
                    let want = ratio_colour(grid.at(r, c), floor, alpha);
                    assert_eq!(
                        got,
                        [want.0, want.1, want.2],
                        "pair {i} variant {v} patch ({r}, {c})"
                    );
                }
            }
        }
    }
}

/// Largest minus smallest ratio of a grid.
fn spread(g: &mix_sheet::RatioGrid) -> f32 {
    let (lo, hi) = g
        .values
        .iter()
        .fold((f32::MAX, f32::MIN), |(lo, hi), &x| (lo.min(x), hi.max(x)));
    hi - lo
}

fn trainer_cmd(args: &[&std::ffi::OsStr]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_trainer"))
        .arg("visualize")
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn both_figures_are_written_reproducibly_and_a_failure_keeps_the_old_one() {
    let tmp = tempfile::tempdir().unwrap();
    let (config, cfg) = tiny_split(tmp.path());
    let split = cfg.data.split_dir.clone();
    let counts = tmp.path().join("counts.png");
    let o = trainer_cmd(&[
        "--split".as_ref(),
        split.as_os_str(),
        "--out".as_ref(),
        counts.as_os_str(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(image::open(&counts).unwrap().dimensions(), (1260, 600));

    let sheet = tmp.path().join("sheet.png");
    let sheet_args = |out: &Path| {
        let o = trainer_cmd(&[
            "--config".as_ref(),
            config.as_os_str(),
            "--pairs".as_ref(),
            "2".as_ref(),
            "--seed".as_ref(),
            "1".as_ref(),
            "--out".as_ref(),
            out.as_os_str(),
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        std::fs::read(out).unwrap()
    };
    let first = sheet_args(&sheet);
    let again = sheet_args(&tmp.path().join("again.png"));
    assert_eq!(first, again, "same seed, same sheet");
    image::load_from_memory(&first).unwrap();

    // --run reads the run's recorded config: the same sheet as --config with that seed.
    let run = tmp.path().join("run");
    std::fs::create_dir(&run).unwrap();
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("[run]\n", "[run]\nseed = 1\n");
    std::fs::write(run.join("config.toml"), text).unwrap();
    let from_run = tmp.path().join("from-run.png");
    let o = trainer_cmd(&[
        "--run".as_ref(),
        run.as_os_str(),
        "--pairs".as_ref(),
        "2".as_ref(),
        "--out".as_ref(),
        from_run.as_os_str(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(std::fs::read(&from_run).unwrap(), first);

    // A split folder without its files: an error naming the file, the old figure kept.
    let before = std::fs::read(&counts).unwrap();
    let missing = tmp.path().join("no-split");
    let o = trainer_cmd(&[
        "--split".as_ref(),
        missing.as_os_str(),
        "--out".as_ref(),
        counts.as_os_str(),
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("train.csv"), "{err}");
    assert_eq!(std::fs::read(&counts).unwrap(), before);
}

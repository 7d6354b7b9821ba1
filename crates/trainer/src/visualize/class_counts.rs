//! Fig. 3: the class counts of a prepared split, one bar chart per split (train, val, test), bars
//! coloured by the Many / Medium / Few group the reports score with
//! ([`crate::evaluate::paper_groups`]), the group rule and each group's count range on this split
//! stated above the panels.

use std::path::Path;

use anyhow::{Context, Result};
use dataset::data_set::DataSet;
use dataset::{Group, IsicClass, NUM_CLASSES};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::plots::{draw_err, render_png, FONT};

/// The splits of a prepared split folder, in drawing order.
pub const SPLITS: [&str; 3] = ["train", "val", "test"];

/// Class counts of a prepared split and the groups they are drawn with.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassCounts {
    /// Images per class (by label) in train, val and test ([`SPLITS`] order).
    pub per_split: [[usize; NUM_CLASSES]; 3],
    /// The groups the reports use (ISIC2018's class ranks), by label.
    pub groups: [Group; NUM_CLASSES],
    /// The groups this split's own class totals would give (same rank rule), by label; differs
    /// from `groups` only when the split ranks its classes unlike ISIC2018.
    pub own_groups: [Group; NUM_CLASSES],
}

impl ClassCounts {
    /// Reads `train.csv`, `val.csv` and `test.csv` of `split_dir` (errors name the file).
    pub fn read(split_dir: &Path) -> Result<Self> {
        let mut per_split = [[0usize; NUM_CLASSES]; 3];
        for (k, split) in SPLITS.iter().enumerate() {
            let data = DataSet::open(split_dir, split).with_context(|| {
                format!(
                    "reading {}",
                    split_dir.join(format!("{split}.csv")).display()
                )
            })?;
            per_split[k] = data.class_counts();
        }
        let totals = totals(&per_split);
        Ok(ClassCounts {
            per_split,
            groups: crate::evaluate::paper_groups(),
            own_groups: dataset::classes::groups_from_counts(&totals),
        })
    }

    /// Images per class over the three splits, by label.
    pub fn totals(&self) -> [usize; NUM_CLASSES] {
        totals(&self.per_split)
    }

    /// Labels in drawing order: the reports' rank order (ISIC2018 counts, descending), so each
    /// group's bars are adjacent.
    pub fn order(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..NUM_CLASSES).collect();
        order.sort_by_key(|&l| {
            let c = IsicClass::ALL[l];
            (std::cmp::Reverse(c.isic2018_count()), l)
        });
        order
    }

    /// The smallest and largest class total of `group` on this split, or None if it has no class.
    pub fn group_range(&self, group: Group) -> Option<(usize, usize)> {
        let t = self.totals();
        let v: Vec<usize> = (0..NUM_CLASSES)
            .filter(|&l| self.groups[l] == group)
            .map(|l| t[l])
            .collect();
        Some((*v.iter().min()?, *v.iter().max()?))
    }

    /// The lines stating the group rule and thresholds drawn above the chart.
    pub fn threshold_lines(&self) -> Vec<String> {
        let names = |g: Group| -> String {
            self.order()
                .into_iter()
                .filter(|&l| self.groups[l] == g)
                .map(|l| IsicClass::ALL[l].name())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let range = |g: Group| match self.group_range(g) {
            Some((lo, hi)) if lo == hi => format!("{lo} images"),
            Some((lo, hi)) => format!("{lo}-{hi} images"),
            None => "no class".into(),
        };
        let mut lines = vec![
            "Groups as the reports score them: classes ranked by ISIC2018 image count; \
             Many = rank 1, Medium = ranks 2-4, Few = ranks 5-7."
                .to_string(),
            format!(
                "Thresholds on this split (train+val+test): Many {} ({}); Medium {} ({}); Few {} ({}).",
                range(Group::Many),
                names(Group::Many),
                range(Group::Medium),
                names(Group::Medium),
                range(Group::Few),
                names(Group::Few)
            ),
        ];
        if self.own_groups != self.groups {
            let moved: Vec<String> = (0..NUM_CLASSES)
                .filter(|&l| self.own_groups[l] != self.groups[l])
                .map(|l| {
                    format!(
                        "{} would be {}",
                        IsicClass::ALL[l].name(),
                        self.own_groups[l].name()
                    )
                })
                .collect();
            lines.push(format!(
                "This split's own ranking differs: {}.",
                moved.join(", ")
            ));
        }
        lines
    }
}

fn totals(per_split: &[[usize; NUM_CLASSES]; 3]) -> [usize; NUM_CLASSES] {
    std::array::from_fn(|l| per_split.iter().map(|s| s[l]).sum())
}

/// Colour of a group's bars.
pub fn group_colour(g: Group) -> RGBColor {
    match g {
        Group::Many => RGBColor(31, 119, 180),
        Group::Medium => RGBColor(255, 127, 14),
        Group::Few => RGBColor(214, 39, 40),
    }
}

/// Canvas size of the chart in pixels.
const SIZE: (u32, u32) = (1260, 600);
/// Height of the band above the panels (title, rule, thresholds, legend).
const HEADER: u32 = 130;

/// Writes the Fig. 3-style chart of `counts` to `out` (PNG, atomically). `title` names the split.
pub fn write_png(counts: &ClassCounts, title: &str, out: &Path) -> Result<()> {
    render_png(out, SIZE, |root| {
        let (header, body) = root.split_vertically(HEADER);
        header
            .draw(&Text::new(
                format!("Class counts per split: {title}"),
                (16, 10),
                (FONT, 24).into_font().color(&BLACK),
            ))
            .map_err(draw_err)?;
        let lines = counts.threshold_lines();
        for (i, line) in lines.iter().enumerate() {
            header
                .draw(&Text::new(
                    line.as_str(),
                    (16, 44 + 20 * i as i32),
                    (FONT, 16).into_font().color(&BLACK),
                ))
                .map_err(draw_err)?;
        }
        let legend_y = 44 + 20 * lines.len() as i32 + 8;
        let mut x = 16;
        for g in [Group::Many, Group::Medium, Group::Few] {
            header
                .draw(&Rectangle::new(
                    [(x, legend_y), (x + 18, legend_y + 16)],
                    group_colour(g).filled(),
                ))
                .map_err(draw_err)?;
            header
                .draw(&Text::new(
                    g.name(),
                    (x + 24, legend_y),
                    (FONT, 16).into_font().color(&BLACK),
                ))
                .map_err(draw_err)?;
            x += 110;
        }
        for (k, panel) in body.split_evenly((1, 3)).iter().enumerate() {
            draw_panel(panel, counts, k)?;
        }
        Ok(())
    })
}

/// One split's bars, value printed above each.
fn draw_panel(
    area: &DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>,
    counts: &ClassCounts,
    split: usize,
) -> Result<()> {
    let order = counts.order();
    let values: Vec<usize> = order.iter().map(|&l| counts.per_split[split][l]).collect();
    let total: usize = values.iter().sum();
    let top = values.iter().copied().max().unwrap_or(0).max(1);
    let mut chart = ChartBuilder::on(area)
        .caption(format!("{} ({total} images)", SPLITS[split]), (FONT, 20))
        .margin(10)
        .x_label_area_size(34)
        .y_label_area_size(56)
        .build_cartesian_2d((0..NUM_CLASSES - 1).into_segmented(), 0..top + top / 8 + 1)
        .map_err(draw_err)?;
    let names: Vec<&str> = order.iter().map(|&l| IsicClass::ALL[l].name()).collect();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(NUM_CLASSES)
        .x_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => {
                names.get(*i).copied().unwrap_or("").to_string()
            }
            SegmentValue::Last => String::new(),
        })
        .y_desc("images")
        .label_style((FONT, 15))
        .axis_desc_style((FONT, 15))
        .draw()
        .map_err(draw_err)?;
    let colours: Vec<RGBColor> = order
        .iter()
        .map(|&l| group_colour(counts.groups[l]))
        .collect();
    // Bars in pixel space (6 px apart), placed from the chart's own coordinates.
    let base = area.get_base_pixel();
    for (i, (&v, colour)) in values.iter().zip(&colours).enumerate() {
        let (x0, y0) = chart.backend_coord(&(SegmentValue::Exact(i), v));
        let (x1, y1) = chart.backend_coord(&(SegmentValue::Exact(i + 1), 0));
        area.draw(&Rectangle::new(
            [
                (x0 - base.0 + 6, y0 - base.1),
                (x1 - base.0 - 6, y1 - base.1),
            ],
            colour.filled(),
        ))
        .map_err(draw_err)?;
    }
    let label = (FONT, 14)
        .into_font()
        .color(&BLACK)
        .pos(Pos::new(HPos::Center, VPos::Bottom));
    chart
        .draw_series(values.iter().enumerate().map(|(i, &v)| {
            EmptyElement::at((SegmentValue::CenterOf(i), v))
                + Text::new(v.to_string(), (0, -3), label.clone())
        }))
        .map_err(draw_err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn synthetic_counts() -> ClassCounts {
        // The bench preset's shape: NV largest, three tail classes at the floor.
        let train = [212, 1301, 80, 25, 208, 20, 20];
        let val = [10; NUM_CLASSES];
        let test = [30; NUM_CLASSES];
        let totals: [usize; NUM_CLASSES] = std::array::from_fn(|l| train[l] + val[l] + test[l]);
        ClassCounts {
            per_split: [train, val, test],
            groups: crate::evaluate::paper_groups(),
            own_groups: dataset::classes::groups_from_counts(&totals),
        }
    }

    #[test]
    fn order_keeps_each_group_together() {
        let c = synthetic_counts();
        let groups: Vec<Group> = c.order().iter().map(|&l| c.groups[l]).collect();
        assert_eq!(groups[0], Group::Many);
        assert!(groups[1..4].iter().all(|&g| g == Group::Medium));
        assert!(groups[4..].iter().all(|&g| g == Group::Few));
    }

    #[test]
    fn thresholds_are_the_group_ranges_of_the_totals() {
        let c = synthetic_counts();
        assert_eq!(c.group_range(Group::Many), Some((1341, 1341)));
        assert_eq!(c.group_range(Group::Medium), Some((120, 252)));
        assert_eq!(c.group_range(Group::Few), Some((60, 65)));
        let lines = c.threshold_lines();
        assert!(lines[1].contains("Many 1341 images (NV)"), "{}", lines[1]);
        assert!(
            lines[1].contains("Few 60-65 images (AKIEC, VASC, DF)"),
            "{}",
            lines[1]
        );
        assert_eq!(lines.len(), 2, "same ranking: no extra line");
    }

    #[test]
    fn a_split_ranked_unlike_isic_says_so() {
        let mut c = synthetic_counts();
        c.per_split[0][IsicClass::Df.label()] = 5000;
        c.own_groups = dataset::classes::groups_from_counts(&c.totals());
        let lines = c.threshold_lines();
        assert!(lines[2].contains("DF would be Many"), "{lines:?}");
    }
}

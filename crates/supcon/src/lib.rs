//! Supervised contrastive losses: SupCon and PaCo with a class-labelled queue.

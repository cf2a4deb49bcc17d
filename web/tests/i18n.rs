//! The catalogue: both languages have the same keys, and every key the templates and the
//! code ask for exists, so no person ever reads a raw key.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use fabrique_controller::domain::campaign::{
    BatchSource, CampaignRefusal, CampaignState, ItemName, PledgePlace, RequestKind, RequestStatus,
    WordGender,
};
use fabrique_controller::domain::machine::ConnectionKind;
use fabrique_controller::domain::{Lang, MachineKind, MachineState, Role};
use fabrique_web::i18n::Catalog;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn files(dir: &Path, ext: &str, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, ext, out);
        } else if path.extension().is_some_and(|e| e == ext) {
            out.push(path);
        }
    }
}

/// The string literals passed to `marker` (e.g. `t("` or `Invalid::new("`), and for
/// `Invalid::new` the second literal too.
fn literals_after(text: &str, marker: &str) -> Vec<(String, Option<String>)> {
    let mut found = Vec::new();
    for piece in text.split(marker).skip(1) {
        let Some(end) = piece.find('"') else { continue };
        let first = piece[..end].to_string();
        let rest = &piece[end + 1..];
        let second = rest
            .trim_start()
            .strip_prefix(',')
            .and_then(|r| r.trim_start().strip_prefix('"'))
            .and_then(|r| r.split('"').next())
            .map(str::to_string);
        found.push((first, second));
    }
    found
}

/// The text with line breaks after an opening parenthesis removed, so that a call split
/// over lines by rustfmt (`tr.f(\n    "key", ...)`) is found like one on a line.
fn squash(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        if c == '(' {
            while chars.peek().is_some_and(|c| c.is_whitespace()) {
                chars.next();
            }
        }
    }
    out
}

#[test]
fn french_and_english_have_the_same_keys() {
    let catalog = Catalog::embedded().unwrap();
    let fr: BTreeSet<_> = catalog.keys(Lang::Fr).collect();
    let en: BTreeSet<_> = catalog.keys(Lang::En).collect();
    assert_eq!(
        fr.difference(&en).collect::<Vec<_>>(),
        Vec::<&&String>::new(),
        "in French only"
    );
    assert_eq!(
        en.difference(&fr).collect::<Vec<_>>(),
        Vec::<&&String>::new(),
        "in English only"
    );
}

#[test]
fn every_key_used_exists() {
    let catalog = Catalog::embedded().unwrap();
    let keys: BTreeSet<String> = catalog.keys(Lang::Fr).cloned().collect();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut used = BTreeSet::new();
    let mut sources = Vec::new();
    files(&root.join("templates"), "html", &mut sources);
    files(&root.join("src"), "rs", &mut sources);
    for file in &sources {
        let text = squash(&std::fs::read_to_string(file).unwrap());
        for marker in [
            ".t(\"",
            ".f(\"",
            "Page::new(&ctx, \"",
            "Page::new(ctx, \"",
            "manager_page(ctx, \"",
            "manager_page(&ctx, \"",
            "AppError::new(StatusCode::UNAUTHORIZED, \"bad_api_key\", \"",
        ] {
            for (key, _) in literals_after(&text, marker) {
                if key.contains('.') {
                    used.insert(key);
                }
            }
        }
        // AppError::new(status, "code", "key")
        let looks_like_key = |k: &String| {
            k.contains('.')
                && !k.starts_with('.')
                && !k.ends_with('.')
                && k.chars()
                    .all(|c| c.is_ascii_lowercase() || c == '.' || c == '_')
        };
        for (first, second) in literals_after(&text, "\", \"") {
            used.extend(std::iter::once(first).chain(second).filter(looks_like_key));
        }
    }
    // Invalid::new("field", "code") in the domain and the web layer.
    let mut domain = Vec::new();
    files(&root.join("../controller/src"), "rs", &mut domain);
    files(&root.join("src"), "rs", &mut domain);
    for file in &domain {
        let text = std::fs::read_to_string(file).unwrap();
        for (field, code) in literals_after(&text, "Invalid::new(\"") {
            used.insert(format!("field.{field}"));
            used.insert(format!(
                "invalid.{}",
                code.expect("Invalid::new with a literal code")
            ));
        }
        for (field, _) in literals_after(&text, "parse_text(\"") {
            used.insert(format!("field.{field}"));
        }
    }
    for word in MachineState::ALL {
        used.insert(format!("state.{word}"));
    }
    for word in MachineKind::ALL {
        used.insert(format!("kind.{word}"));
    }
    for word in ConnectionKind::ALL {
        used.insert(format!("connection.{word}"));
    }
    for code in [
        "badge_required",
        "slot_taken",
        "outside_opening_hours",
        "past_closing",
        "own_booking",
        "lab_closed",
        "beyond_horizon",
        "in_the_past",
        "too_long",
        "not_on_slot_grid",
        "too_many_bookings",
        "machine_unavailable",
        "invalid_range",
        "cancel_deadline_passed",
        "supervision_not_allowed",
    ] {
        used.insert(format!("refusal.{code}"));
    }
    for i in 0..7 {
        used.insert(format!("weekday.{i}"));
    }
    for i in 1..=12 {
        used.insert(format!("month.{i}"));
    }
    for word in ["booked", "checked_in", "cancelled", "no_show", "block"] {
        used.insert(format!("booking_status.{word}"));
    }
    for word in ["valid", "expiring_soon", "expired", "lapsed", "revoked"] {
        used.insert(format!("badge_status.{word}"));
    }
    for word in ["enrolled", "waiting", "cancelled"] {
        used.insert(format!("enrolment.{word}"));
    }
    for what in [
        "username",
        "machine_name",
        "api_key",
        "training_name",
        "enrolment",
    ] {
        used.insert(format!("conflict.{what}"));
    }
    for word in Role::ALL {
        used.insert(format!("role.{word}"));
    }
    for word in CampaignState::ALL {
        used.insert(format!("campaign_state.{word}"));
        used.insert(format!("campaign_action.{word}"));
    }
    for word in RequestKind::ALL {
        used.insert(format!("request_kind.{word}"));
    }
    for word in RequestStatus::ALL {
        used.insert(format!("request_status.{word}"));
    }
    for word in PledgePlace::ALL {
        used.insert(format!("pledge_place.{word}"));
    }
    for word in BatchSource::ALL {
        used.insert(format!("batch_source.{word}"));
    }
    for word in WordGender::ALL {
        used.insert(format!("item_gender.{word}"));
        used.insert(format!("campaigns.delivered.{word}"));
    }
    for word in ["declared", "dropped", "received", "checked"] {
        used.insert(format!("batch_status.{word}"));
    }
    for word in [
        "requested",
        "pledged",
        "produced",
        "received",
        "accepted",
        "rejected",
        "assembled",
        "delivered",
    ] {
        used.insert(format!("count.{word}"));
    }
    for word in [
        "batch",
        "source",
        "maker",
        "lab",
        "declared",
        "declared_on",
        "collection_point",
        "received",
        "accepted",
        "rejected",
        "reason",
        "delivery",
        "delivered_on",
        "organisation",
        "request",
        "items_from_assembly",
        "assembly",
        "parts_from_batch",
    ] {
        used.insert(format!("csv.{word}"));
    }
    for code in fabrique_controller::domain::fit::Refusal::CODES {
        used.insert(format!("fit.{code}"));
    }
    for code in fabrique_controller::domain::fit::Waiting::CODES {
        used.insert(format!("waiting.{code}"));
    }
    for word in ["gcode", "embroidery"] {
        used.insert(format!("file_kind.{word}"));
    }
    // What a manager approves: the G-code findings and the approvable misfits.
    for code in [
        fabrique_machines::files::gcode::checks::FORBIDDEN_COMMAND,
        fabrique_machines::files::gcode::checks::UNPARSABLE_LINE,
        "constant_power",
    ] {
        used.insert(format!("finding.{code}"));
    }
    for code in CampaignRefusal::CODES {
        used.insert(format!("campaign_refusal.{code}"));
    }
    for what in [
        "material_name",
        "campaign_state",
        "parts",
        "stock",
        "items",
        "campaign_file",
        "job_state",
    ] {
        used.insert(format!("conflict.{what}"));
    }
    // A counting message is used by its stem and stored by plural category.
    let missing: Vec<_> = used
        .iter()
        .filter(|k| !keys.contains(*k) && !keys.contains(&format!("{k}.other")))
        .collect();
    assert!(
        missing.is_empty(),
        "keys used but missing from the catalogue: {missing:?}"
    );
    assert!(
        used.len() > 100,
        "the scan found only {} keys: is it still reading the sources?",
        used.len()
    );
}

/// Every counting message has the forms both languages need, `one` and `other` (what the
/// CLDR rules of French and English choose from), no other category by mistake, and no
/// plain key beside its forms.
#[test]
fn counting_messages_have_their_plural_forms() {
    let catalog = Catalog::embedded().unwrap();
    for lang in [Lang::Fr, Lang::En] {
        let keys: BTreeSet<&String> = catalog.keys(lang).collect();
        for key in &keys {
            let Some((stem, category)) = key.rsplit_once('.') else {
                continue;
            };
            // `other` alone is also a word of closed sets (`kind.other`): a counting message
            // is known by its `one`.
            if !matches!(category, "zero" | "one" | "two" | "few" | "many") {
                continue;
            }
            assert!(
                matches!(category, "one" | "other"),
                "{lang}: {key} is a category neither language uses"
            );
            for form in ["one", "other"] {
                assert!(
                    keys.contains(&format!("{stem}.{form}")),
                    "{lang}: {stem}.{form} is missing"
                );
            }
            assert!(
                !keys.contains(&stem.to_string()),
                "{lang}: {stem} and its forms"
            );
        }
    }
}

/// The catalogue's plural forms follow each language's rules: French counts 0 and 1 as
/// one, English only 1; the ugly "place(s) libre(s)" is gone.
#[test]
fn counts_take_the_plural_form_of_their_language() {
    use fabrique_web::i18n::Tr;
    let catalog = std::sync::Arc::new(Catalog::embedded().unwrap());
    let fr = Tr::new(Lang::Fr, catalog.clone());
    let en = Tr::new(Lang::En, catalog);
    let places = |tr: &Tr, free: &str| tr.f("session.places", &[("free", free), ("capacity", "6")]);
    assert_eq!(places(&fr, "0"), "0 place libre sur 6");
    assert_eq!(places(&fr, "1"), "1 place libre sur 6");
    assert_eq!(places(&fr, "5"), "5 places libres sur 6");
    assert_eq!(places(&en, "0"), "0 free places out of 6");
    assert_eq!(places(&en, "1"), "1 free place out of 6");
    // A campaign's item: its name counted, the participle agreeing with its gender.
    let visor = ItemName::parse("visière", "", "feminine").unwrap();
    let mask = ItemName::parse("masque", "", "masculine").unwrap();
    let delivered = |tr: &Tr, gender: &str, n: i64, item: &ItemName| {
        let key = format!("campaigns.delivered.{gender}");
        tr.n(&key, n, &[("target", "300"), ("item", tr.item(n, item))])
    };
    assert_eq!(
        delivered(&fr, "feminine", 12, &visor),
        "12 visières livrées sur 300"
    );
    assert_eq!(
        delivered(&fr, "feminine", 1, &visor),
        "1 visière livrée sur 300"
    );
    assert_eq!(
        delivered(&fr, "feminine", 0, &visor),
        "0 visière livrée sur 300"
    );
    assert_eq!(
        delivered(&fr, "masculine", 12, &mask),
        "12 masques livrés sur 300"
    );
    assert_eq!(
        delivered(&en, "feminine", 0, &visor),
        "0 visières delivered out of 300"
    );
    assert_eq!(
        fr.f("login.throttled", &[("minutes", "1")]),
        "Trop d'essais. Attendez 1 minute puis réessayez, ou demandez à l'accueil."
    );
    assert_eq!(
        en.f("login.throttled", &[("minutes", "15")]),
        "Too many tries. Wait 15 minutes and try again, or ask the front desk."
    );
    assert_eq!(
        en.n("trainings.validity", 1, &[("months", "1")]),
        "badge valid 1 month"
    );
    let catalog = Catalog::embedded().unwrap();
    for (lang, tr) in [(Lang::Fr, &fr), (Lang::En, &en)] {
        for key in catalog.keys(lang) {
            let text = tr.t(key);
            assert!(!text.contains("(s)"), "{lang} {key}: {text}");
        }
    }
}

/// French typography in the catalogue: a narrow no-break space inside « » and before ; ? !,
/// a no-break space before a colon (never a plain space, which a line may break at); English
/// has none of them.
#[test]
fn french_quotes_and_high_punctuation_have_narrow_no_break_spaces() {
    let catalog = Catalog::embedded().unwrap();
    let fr =
        fabrique_web::i18n::Tr::new(Lang::Fr, std::sync::Arc::new(Catalog::embedded().unwrap()));
    let en =
        fabrique_web::i18n::Tr::new(Lang::En, std::sync::Arc::new(Catalog::embedded().unwrap()));
    for key in catalog.keys(Lang::Fr) {
        let text = fr.t(key);
        for bad in ["« ", " »", " ;", " ?", " !", " :"] {
            assert!(!text.contains(bad), "fr {key}: {bad:?} in {text:?}");
        }
    }
    for key in catalog.keys(Lang::En) {
        let text = en.t(key);
        assert!(
            !text.contains(" :") && !text.contains('\u{202f}'),
            "en {key}: {text:?}"
        );
    }
}

//! The message catalogue: every string a person reads, in French and in English.
//!
//! `i18n/fr.toml` and `i18n/en.toml` are flat tables of keys to messages, embedded in the
//! binary. Messages may hold `{name}` placeholders. A message that counts something has one
//! key per plural category of CLDR (`session.places.one`, `session.places.other`), chosen
//! by the language's rules through ICU4X's `icu_plurals` ([`Tr::n`]): French says "0 place
//! libre" and "1 place libre", English "0 free places" and "1 free place". A test checks
//! that both catalogues have the same keys and that every key the templates and the code
//! use exists.

use fabrique_controller::domain::Lang;
use fabrique_controller::domain::campaign::ItemName;
use fabrique_controller::domain::fit::{Refusal, Waiting};
use fabrique_machines::files::gcode::LimitsUsed;
use icu_locale_core::{LanguageIdentifier, langid};
use icu_plurals::{PluralCategory, PluralRules};
use std::collections::HashMap;
use std::sync::Arc;

const FR: &str = include_str!("../i18n/fr.toml");
const EN: &str = include_str!("../i18n/en.toml");

#[derive(Debug)]
pub struct Catalog {
    fr: HashMap<String, String>,
    en: HashMap<String, String>,
    plural_fr: PluralRules,
    plural_en: PluralRules,
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("{0}")]
    Toml(#[from] toml::de::Error),
    #[error("plural rules: {0}")]
    Plurals(String),
}

fn cardinal(lang: &LanguageIdentifier) -> Result<PluralRules, CatalogError> {
    PluralRules::try_new_cardinal(lang.into()).map_err(|e| CatalogError::Plurals(e.to_string()))
}

impl Catalog {
    /// Parses the embedded catalogues and loads the plural rules of both languages (built
    /// into `icu_plurals`). They are part of the binary, so a failure here is a build defect
    /// that the test suite catches.
    pub fn embedded() -> Result<Self, CatalogError> {
        Ok(Self {
            fr: toml::from_str(FR)?,
            en: toml::from_str(EN)?,
            plural_fr: cardinal(&langid!("fr"))?,
            plural_en: cardinal(&langid!("en"))?,
        })
    }

    fn plural_rules(&self, lang: Lang) -> &PluralRules {
        match lang {
            Lang::Fr => &self.plural_fr,
            Lang::En => &self.plural_en,
        }
    }

    fn table(&self, lang: Lang) -> &HashMap<String, String> {
        match lang {
            Lang::Fr => &self.fr,
            Lang::En => &self.en,
        }
    }

    pub fn keys(&self, lang: Lang) -> impl Iterator<Item = &String> {
        self.table(lang).keys()
    }
}

/// A translator for one request's language.
#[derive(Debug, Clone)]
pub struct Tr {
    pub lang: Lang,
    catalog: Arc<Catalog>,
}

impl Tr {
    pub fn new(lang: Lang, catalog: Arc<Catalog>) -> Self {
        Self { lang, catalog }
    }

    /// The message for `key`. A missing key shows the key itself (and is logged), so a page
    /// still renders; the catalogue test keeps this from reaching anyone.
    pub fn t<'a>(&'a self, key: &'a str) -> &'a str {
        match self.catalog.table(self.lang).get(key) {
            Some(message) => message,
            None => {
                tracing::warn!(key, lang = %self.lang, "missing message");
                key
            }
        }
    }

    /// Whether the catalogue has `key`.
    pub fn has(&self, key: &str) -> bool {
        self.catalog.table(self.lang).contains_key(key)
    }

    /// The message for `key` with its `{name}` placeholders filled. A counting message (one
    /// with `key.other` in the catalogue) takes the plural form of its `count` argument, or
    /// of its first whole-number argument ([`Tr::n`]).
    pub fn f(&self, key: &str, args: &[(&str, &str)]) -> String {
        let table = self.catalog.table(self.lang);
        if !table.contains_key(key) && table.contains_key(&format!("{key}.other")) {
            let count = args
                .iter()
                .find(|(name, _)| *name == "count")
                .and_then(|(_, v)| v.parse::<i64>().ok())
                .or_else(|| args.iter().find_map(|(_, v)| v.parse::<i64>().ok()))
                .unwrap_or(0);
            return self.n(key, count, args);
        }
        args.iter()
            .fold(self.t(key).to_string(), |text, (name, value)| {
                text.replace(&format!("{{{name}}}"), value)
            })
    }

    /// The message for `key` counting `count`: the key of the count's plural category in
    /// this language (`key.one`, `key.other`; `other` when the catalogue has no message of
    /// that category), with `{count}` and the other placeholders filled.
    pub fn n(&self, key: &str, count: i64, args: &[(&str, &str)]) -> String {
        let exact = format!("{key}.{}", self.category(count));
        let key = if self.has(&exact) {
            exact
        } else {
            format!("{key}.other")
        };
        let count = count.to_string();
        let mut all: Vec<(&str, &str)> = vec![("count", count.as_str())];
        all.extend_from_slice(args);
        self.f(&key, &all)
    }

    /// The form of a campaign item's name that goes with `count` in this language: "1
    /// visière" and "0 visière" in French, "0 visors" in English.
    pub fn item<'a>(&self, count: i64, item: &'a ItemName) -> &'a str {
        if self.category(count) == "one" {
            &item.singular
        } else {
            &item.plural
        }
    }

    /// The CLDR plural category of `count` in this language.
    fn category(&self, count: i64) -> &'static str {
        let category = self
            .catalog
            .plural_rules(self.lang)
            .category_for(count.unsigned_abs());
        match category {
            PluralCategory::Zero => "zero",
            PluralCategory::One => "one",
            PluralCategory::Two => "two",
            PluralCategory::Few => "few",
            PluralCategory::Many => "many",
            PluralCategory::Other => "other",
        }
    }

    /// The translated name of a word from a closed set: `t("state.idle")`.
    pub fn word(&self, group: &str, word: &str) -> String {
        self.t(&format!("{group}.{word}")).to_string()
    }

    /// Whose speed limits a time estimate used, in words.
    pub fn limits_used(&self, used: LimitsUsed) -> String {
        let mut text = self.word("limits_source", used.source.as_str());
        if used.file_commands {
            text.push_str(self.t("jobs.limits_file_commands"));
        }
        text
    }

    pub fn lang_code(&self) -> &'static str {
        self.lang.as_str()
    }

    /// Why the fit rule refuses a job on a machine (`fit.<code>`), its words translated.
    pub fn refusal(&self, refusal: &Refusal) -> String {
        let args: Vec<(&str, String)> = refusal
            .args()
            .into_iter()
            .map(|(name, value)| {
                let value = match (name, refusal) {
                    ("machine", _) => self.word("kind", &value),
                    ("file", _) if value == "gcode" || value == "embroidery" => {
                        self.word("file_kind", &value)
                    }
                    ("file", _) => self.word("kind", &value),
                    ("state", Refusal::NotQueued { .. }) => self.word("job_state", &value),
                    ("state", _) => self.word("state", &value),
                    ("codes", _) => value
                        .split(", ")
                        .map(|code| self.word("finding", code))
                        .collect::<Vec<_>>()
                        .join(" ; "),
                    _ => value,
                };
                (name, value)
            })
            .collect();
        let args: Vec<(&str, &str)> = args.iter().map(|(k, v)| (*k, v.as_str())).collect();
        self.f(&format!("fit.{}", refusal.code()), &args)
    }

    /// Why a job waits: no machine of the lab may run it yet.
    pub fn waiting(&self, waiting: &Waiting) -> String {
        match waiting {
            Waiting::OnMachine { machine, refusal } => self.f(
                "waiting.on_machine",
                &[("machine", machine), ("reason", &self.refusal(refusal))],
            ),
            Waiting::NoMachine(refusal) => {
                let key = format!("waiting.none.{}", refusal.code());
                if self.catalog.table(self.lang).contains_key(&key) {
                    let args = refusal.args();
                    let args: Vec<(&str, &str)> =
                        args.iter().map(|(k, v)| (*k, v.as_str())).collect();
                    self.f(&key, &args)
                } else {
                    self.f("waiting.none", &[("reason", &self.refusal(refusal))])
                }
            }
            Waiting::Several(list) => {
                let reasons: Vec<String> = list
                    .iter()
                    .map(|(machine, r)| {
                        format!("{machine}{}{}", self.t("punct.colon"), self.refusal(r))
                    })
                    .collect();
                self.f(
                    "waiting.several_reasons",
                    &[("reasons", &reasons.join(" "))],
                )
            }
            Waiting::NoMachineOfKind => self.t("waiting.no_machine_of_kind").to_string(),
            Waiting::Unavailable => self.t("waiting.machine_unavailable").to_string(),
            Waiting::NoRoom => self.t("waiting.no_room").to_string(),
        }
    }
}

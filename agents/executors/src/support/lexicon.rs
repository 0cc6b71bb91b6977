//! The languages the offline text executors know: per language a stop-word list (function words
//! that carry no topic, and whose frequency identifies the language) and a short sample text
//! from which a character-trigram profile is built for detection.

use std::collections::HashMap;
use std::sync::OnceLock;

/// One language the text executors know.
pub struct Language {
    /// ISO 639-1 code (`en`, `de`, ...).
    pub code: &'static str,
    /// English name.
    pub name: &'static str,
    /// Its most common function words, lower case.
    pub stopwords: &'static [&'static str],
    /// Representative text (UDHR articles 1 and 3 and an everyday sentence) for the trigram
    /// profile.
    sample: &'static str,
}

impl Language {
    /// Whether `word` (lower case) is one of this language's stop words.
    pub fn is_stopword(&self, word: &str) -> bool {
        self.stopwords.contains(&word)
    }
}

/// Every known language; English first (the fallback).
pub static LANGUAGES: &[Language] = &[
    Language {
        code: "en",
        name: "English",
        stopwords: &[
            "a", "about", "above", "after", "again", "against", "all", "am", "an", "and", "any", "are", "as",
            "at", "be", "because", "been", "before", "being", "below", "between", "both", "but", "by", "can",
            "could", "did", "do", "does", "doing", "down", "during", "each", "few", "for", "from", "further",
            "had", "has", "have", "having", "he", "her", "here", "hers", "him", "his", "how", "i", "if",
            "in", "into", "is", "it", "its", "itself", "just", "me", "more", "most", "my", "no", "nor",
            "not", "now", "of", "off", "on", "once", "only", "or", "other", "our", "out", "over", "own",
            "same", "she", "should", "so", "some", "such", "than", "that", "the", "their", "them", "then",
            "there", "these", "they", "this", "those", "through", "to", "too", "under", "until", "up",
            "very", "was", "we", "were", "what", "when", "where", "which", "while", "who", "whom", "why",
            "will", "with", "would", "you", "your", "also", "many", "much", "us", "don't", "it's", "i'm",
            "can't", "won't", "isn't", "doesn't", "didn't", "that's", "there's", "i've", "you're", "we're",
            "they're", "i'll", "let's", "aren't", "wasn't",
        ],
        sample: "All human beings are born free and equal in dignity and rights. They are endowed with \
                 reason and conscience and should act towards one another in a spirit of brotherhood. \
                 Everyone has the right to life, liberty and security of person. The weather was warm \
                 this morning, so we walked through the old town and had coffee near the river.",
    },
    Language {
        code: "de",
        name: "German",
        stopwords: &[
            "aber", "alle", "allem", "allen", "aller", "alles", "als", "also", "am", "an", "andere", "auch",
            "auf", "aus", "bei", "bin", "bis", "bist", "da", "damit", "dann", "das", "dass", "dein", "deine",
            "dem", "den", "denn", "der", "des", "dich", "die", "dies", "diese", "dieser", "dieses", "dir",
            "doch", "dort", "du", "durch", "ein", "eine", "einem", "einen", "einer", "eines", "er", "es",
            "etwas", "euch", "für", "gegen", "gewesen", "habe", "haben", "hat", "hatte", "hier", "ich",
            "ihm", "ihn", "ihnen", "ihr", "ihre", "im", "in", "ist", "jede", "jeder", "jetzt", "kann",
            "kein", "keine", "können", "man", "mein", "meine", "mich", "mir", "mit", "muss", "nach", "nicht",
            "nichts", "noch", "nun", "nur", "ob", "oder", "ohne", "sehr", "sein", "seine", "sich", "sie",
            "sind", "so", "soll", "sondern", "über", "um", "und", "uns", "unser", "unter", "viel", "vom",
            "von", "vor", "war", "waren", "warum", "was", "weil", "welche", "wenn", "wer", "werden", "wie",
            "wieder", "wir", "wird", "wo", "zu", "zum", "zur", "zwischen",
        ],
        sample: "Alle Menschen sind frei und gleich an Würde und Rechten geboren. Sie sind mit Vernunft \
                 und Gewissen begabt und sollen einander im Geist der Brüderlichkeit begegnen. Jeder hat \
                 das Recht auf Leben, Freiheit und Sicherheit der Person. Heute Morgen war das Wetter \
                 warm, deshalb sind wir durch die Altstadt gelaufen und haben am Fluss Kaffee getrunken.",
    },
    Language {
        code: "fr",
        name: "French",
        stopwords: &[
            "à", "au", "aux", "avec", "ce", "ces", "cette", "ceux", "comme", "dans", "de", "des", "du",
            "elle", "elles", "en", "est", "et", "été", "être", "il", "ils", "je", "la", "le", "les", "leur",
            "leurs", "lui", "ma", "mais", "me", "même", "mes", "moi", "mon", "ne", "nos", "notre", "nous",
            "on", "ont", "ou", "où", "par", "pas", "pour", "qu", "que", "qui", "sa", "sans", "se", "ses",
            "son", "sont", "sur", "ta", "te", "tes", "toi", "ton", "tu", "un", "une", "vos", "votre", "vous",
            "y", "c", "d", "j", "l", "m", "n", "s", "était", "aussi", "bien", "très", "plus", "peut", "fait",
            "cela", "tout", "tous",
        ],
        sample: "Tous les êtres humains naissent libres et égaux en dignité et en droits. Ils sont doués \
                 de raison et de conscience et doivent agir les uns envers les autres dans un esprit de \
                 fraternité. Tout individu a droit à la vie, à la liberté et à la sûreté de sa personne. \
                 Ce matin, il faisait chaud, alors nous nous sommes promenés dans la vieille ville et \
                 avons pris un café près de la rivière.",
    },
    Language {
        code: "es",
        name: "Spanish",
        stopwords: &[
            "a", "al", "algo", "ante", "como", "con", "contra", "cual", "cuando", "de", "del", "desde",
            "donde", "durante", "e", "el", "ella", "ellas", "ellos", "en", "entre", "era", "es", "esa",
            "ese", "eso", "esta", "está", "están", "este", "esto", "estos", "fue", "fueron", "ha", "han",
            "hasta", "hay", "la", "las", "le", "les", "lo", "los", "más", "me", "mi", "mis", "muy", "nada",
            "ni", "no", "nos", "nosotros", "o", "otra", "otro", "para", "pero", "poco", "por", "porque",
            "que", "quien", "se", "ser", "si", "sí", "sin", "sobre", "son", "su", "sus", "también", "tan",
            "te", "tiene", "todo", "todos", "tu", "un", "una", "uno", "unos", "y", "ya", "yo", "ahora",
            "todavía", "aquí", "entonces", "después", "así", "hacia",
        ],
        sample: "Todos los seres humanos nacen libres e iguales en dignidad y derechos y, dotados como \
                 están de razón y conciencia, deben comportarse fraternalmente los unos con los otros. \
                 Todo individuo tiene derecho a la vida, a la libertad y a la seguridad de su persona. \
                 Esta mañana hacía calor, así que caminamos por el casco antiguo y tomamos un café cerca \
                 del río.",
    },
    Language {
        code: "it",
        name: "Italian",
        stopwords: &[
            "a", "ad", "agli", "al", "alla", "alle", "allo", "anche", "ancora", "che", "chi", "ci", "come",
            "con", "cosa", "da", "dal", "dalla", "dei", "del", "della", "delle", "dello", "di", "dove", "e",
            "ed", "è", "era", "essere", "fra", "gli", "ha", "hanno", "ho", "i", "il", "in", "io", "la", "le",
            "lei", "li", "lo", "loro", "lui", "ma", "mi", "mio", "molto", "ne", "nei", "nel", "nella",
            "nelle", "noi", "non", "o", "per", "perché", "più", "quale", "quando", "quello", "questo", "se",
            "sei", "si", "sia", "siamo", "sono", "su", "sua", "sue", "sui", "sul", "sulla", "suo", "tra",
            "tu", "tutti", "tutto", "un", "una", "uno", "voi", "dell", "all", "nell", "l", "c",
        ],
        sample: "Tutti gli esseri umani nascono liberi ed eguali in dignità e diritti. Essi sono dotati \
                 di ragione e di coscienza e devono agire gli uni verso gli altri in spirito di \
                 fratellanza. Ogni individuo ha diritto alla vita, alla libertà ed alla sicurezza della \
                 propria persona. Questa mattina faceva caldo, quindi abbiamo passeggiato per il centro \
                 storico e preso un caffè vicino al fiume.",
    },
    Language {
        code: "pt",
        name: "Portuguese",
        stopwords: &[
            "a", "ao", "aos", "as", "até", "com", "como", "da", "das", "de", "dela", "dele", "do", "dos",
            "e", "é", "ela", "ele", "eles", "em", "entre", "era", "essa", "esse", "esta", "está", "estão",
            "este", "eu", "foi", "for", "há", "isso", "isto", "já", "lhe", "mais", "mas", "me", "mesmo",
            "meu", "minha", "muito", "na", "não", "nas", "nem", "no", "nos", "nós", "num", "numa", "o", "os",
            "ou", "para", "pela", "pelo", "por", "quando", "que", "quem", "se", "sem", "ser", "seu", "seus",
            "só", "sua", "suas", "também", "te", "tem", "ter", "um", "uma", "umas", "uns", "você", "agora",
            "ainda", "aqui", "então", "depois", "assim", "onde", "porque", "seja", "pelos", "pelas",
        ],
        sample: "Todos os seres humanos nascem livres e iguais em dignidade e em direitos. Dotados de \
                 razão e de consciência, devem agir uns para com os outros em espírito de fraternidade. \
                 Todo indivíduo tem direito à vida, à liberdade e à segurança pessoal. Esta manhã estava \
                 calor, por isso caminhamos pela cidade velha e tomamos um café perto do rio.",
    },
    Language {
        code: "nl",
        name: "Dutch",
        stopwords: &[
            "aan", "al", "alles", "als", "bij", "dan", "dat", "de", "der", "deze", "die", "dit", "doch",
            "door", "dus", "een", "en", "er", "geen", "had", "heb", "hebben", "heeft", "het", "hier", "hij",
            "hoe", "hun", "ik", "in", "is", "ja", "je", "kan", "kon", "maar", "me", "meer", "men", "met",
            "mij", "mijn", "na", "naar", "niet", "niets", "nog", "nu", "of", "om", "omdat", "ons", "ook",
            "op", "over", "te", "tegen", "toch", "tot", "u", "uit", "van", "veel", "voor", "want", "waren",
            "was", "wat", "we", "wel", "werd", "wie", "wij", "wil", "worden", "zal", "ze", "zei", "zich",
            "zij", "zijn", "zo", "zonder", "zou",
        ],
        sample: "Alle mensen worden vrij en gelijk in waardigheid en rechten geboren. Zij zijn begiftigd \
                 met verstand en geweten, en behoren zich jegens elkander in een geest van broederschap \
                 te gedragen. Een ieder heeft het recht op leven, vrijheid en onschendbaarheid van zijn \
                 persoon. Vanochtend was het warm, dus liepen we door de oude stad en dronken we koffie \
                 bij de rivier.",
    },
];

/// Looks a language up by its code.
pub fn by_code(code: &str) -> Option<&'static Language> {
    LANGUAGES.iter().find(|l| l.code == code)
}

/// English, the fallback when nothing else fits.
pub fn english() -> &'static Language {
    &LANGUAGES[0]
}

/// Codes of every known language, for error messages: `en, de, ...`.
pub fn codes() -> String {
    LANGUAGES.iter().map(|l| l.code).collect::<Vec<_>>().join(", ")
}

/// A character-trigram frequency vector, normalised to length 1 (cosine similarity is then a
/// dot product).
pub type TrigramProfile = HashMap<[char; 3], f64>;

/// The trigram profile of each language's sample, in [`LANGUAGES`] order, built once.
pub fn profiles() -> &'static [TrigramProfile] {
    static PROFILES: OnceLock<Vec<TrigramProfile>> = OnceLock::new();
    PROFILES.get_or_init(|| LANGUAGES.iter().map(|l| trigram_profile(l.sample)).collect())
}

/// Trigrams of the lower-cased letters of `text`, each word padded with a space on both sides
/// (so word starts and ends count), normalised to unit length.
pub fn trigram_profile(text: &str) -> TrigramProfile {
    let mut counts: TrigramProfile = HashMap::new();
    for word in text.split(|c: char| !c.is_alphabetic()).filter(|w| !w.is_empty()) {
        let chars: Vec<char> = std::iter::once(' ')
            .chain(word.chars().flat_map(char::to_lowercase))
            .chain(std::iter::once(' '))
            .collect();
        for t in chars.windows(3) {
            *counts.entry([t[0], t[1], t[2]]).or_default() += 1.0;
        }
    }
    let norm = counts.values().map(|v| v * v).sum::<f64>().sqrt();
    if norm > 0.0 {
        counts.values_mut().for_each(|v| *v /= norm);
    }
    counts
}

/// Cosine similarity of two unit-length profiles, 0-1.
pub fn cosine(a: &TrigramProfile, b: &TrigramProfile) -> f64 {
    let (small, large) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    small
        .iter()
        .filter_map(|(k, v)| large.get(k).map(|w| v * w))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_consistent() {
        assert_eq!(codes(), "en, de, fr, es, it, pt, nl");
        for l in LANGUAGES {
            assert!(l.stopwords.iter().all(|w| *w == w.to_lowercase()), "{}", l.code);
            assert!(l.is_stopword(l.stopwords[0]));
        }
        assert_eq!(by_code("nl").unwrap().name, "Dutch");
        assert!(by_code("xx").is_none());
        assert_eq!(english().code, "en");
    }

    #[test]
    fn trigram_similarity() {
        let a = trigram_profile("the cat");
        assert!((cosine(&a, &a) - 1.0).abs() < 1e-9);
        assert!(a.contains_key(&[' ', 't', 'h']) && a.contains_key(&['a', 't', ' ']));
        assert_eq!(cosine(&a, &trigram_profile("xyz")), 0.0);
        assert_eq!(profiles().len(), LANGUAGES.len());
    }
}

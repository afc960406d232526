"""German phrases. `{p}` is how the platform writes a command ("/" or "/newsbot ")."""

MESSAGES: dict[str, str] = {
    # --- posts (render) ---
    "dont_know": "Das weiß ich nicht — die Artikel sagen dazu nichts.",
    "source": "Quelle",
    "sources": "Quellen",
    "why": "Warum gemeldet",
    "who": "Wer",
    "where": "Wo",
    "also": "Auch berichtet von",
    "digest": "Konflikt-Überblick",
    "items": "{n} Meldung(en)",
    "since": "seit {since}",
    "empty": "Keine neuen konfliktbezogenen Artikel.",
    "alert": "Meldung",
    "alerts_merged": "{n} neue Meldungen",
    "other": "Sonstiges",
    "score": "Wert {score:.2f}",
    "digest_continued": "Konflikt-Überblick (Fortsetzung)",
    # --- buttons ---
    "button_why": "Warum?",
    "button_up": "👍 relevant",
    "button_down": "👎 nicht relevant",
    # --- conversation ---
    "help_intro": "newsbot beobachtet Nachrichten zu Krieg, Terror, militärischen Spannungen und "
    "Konfliktdiplomatie.",
    "help_settings": "   {p}settings digest 07:30 Europe/Berlin | digest every 6 | digest off\n"
    "   {p}settings alerts on|off | threshold 0.85 | quiet 22:00-07:00 | lang en\n"
    "   {p}settings countries Ukraine,Syrien | include Wort,… | exclude Wort,…",
    "help_sources": "   {p}sources add URL, {p}sources remove ID (Admins)",
    "arg_question": "<Frage>",
    "help_question": "Oder einfach eine Frage stellen; als Antwort auf eine Meldung bezieht sie "
    "sich auf deren Artikel.",
    "subscribed": "Abonniert: Dieser Chat erhält Meldungen und Überblicke.",
    "already": "Dieser Chat ist bereits abonniert.",
    "unsubscribed": "Abbestellt: Keine Meldungen oder Überblicke mehr.",
    "not_subscribed": "Dieser Chat ist nicht abonniert.",
    "unknown": "Unbekannter Befehl {command}. {p}help zeigt die Liste.",
    "admins_only": "Das dürfen nur Administratoren des Chats.",
    "empty_question": "Bitte eine Frage nach {p}ask stellen, z. B. {p}ask Wer vertritt die USA?",
    "slow_down": "Viele Fragen in kurzer Zeit — bitte {seconds} s warten.",
    "slow_down_commands": "Viele Befehle in kurzer Zeit — bitte {seconds} s warten.",
    "question_too_long": "Diese Frage ist zu lang ({n} Zeichen); bitte unter {limit} bleiben.",
    "settings": "Abonniert: {subscribed}. Sprache: {lang}. Meldungen: {alerts} (ab Wert "
    "{alert:.2f}). Überblick: {digest}. Ruhezeit: {quiet}. Länder: {countries}. "
    "Nur mit: {include}. Ohne: {exclude}.",
    "yes": "ja",
    "no": "nein",
    "on": "an",
    "off": "aus",
    "none": "keine",
    "daily": "täglich um {at} ({tz})",
    "every": "alle {hours} Std.",
    "saved": "Gespeichert. {summary}",
    "subscribe_first": "Bitte zuerst mit {p}subscribe abonnieren.",
    "bad_setting": "Das geht nicht: {error}. {p}help zeigt Beispiele.",
    "bad_on_off": "„{value}“ ist weder an noch aus",
    "bad_language": "Sprache „{value}“ (wählbar: {choices})",
    "bad_number": "Schwelle „{value}“ ist keine Zahl",
    "bad_threshold": "die Schwelle liegt zwischen 0 und 1",
    "bad_words": "höchstens {n} Wörter mit je höchstens {chars} Zeichen, durch Kommas getrennt",
    "unknown_country": (
        "countries: kein Land und keine Region, die ich kenne: {value} (z. B. Ukraine, Syrien)"
    ),
    "bad_every": "digest every N: N muss 1 bis 168 Stunden sein",
    "bad_digest": "digest braucht HH:MM [Zeitzone], every N oder off",
    "bad_quiet": "Ruhezeiten sehen so aus: 22:00-07:00",
    "quiet_equal": (
        "Ruhezeiten von {value} bis {value} hielten jede Meldung den ganzen Tag zurück: "
        "zwei verschiedene Uhrzeiten angeben, z. B. 22:00-07:00, oder quiet off"
    ),
    "bad_time": "„{value}“ ist keine Uhrzeit wie 08:00",
    "bad_zone": "unbekannte Zeitzone „{value}“ (IANA-Name wie Europe/Berlin)",
    "unknown_setting": "unbekannte Einstellung „{value}“",
    "sources_list": "Feeds, die dieser Chat beobachtet:\n{lines}",
    "no_sources": "Dieser Chat hat keine Feeds hinzugefügt. Mit {p}sources add URL hinzufügen.",
    "source_added": "Feed {url} hinzugefügt; Abruf alle {minutes} Minuten.",
    "source_known": "Dieser Chat beobachtet diesen Feed schon.",
    "source_removed": "Feed {source} entfernt.",
    "source_unknown": "Dieser Chat hat keinen Feed {source} hinzugefügt.",
    "source_refused": "Diesen Feed kann ich nicht hinzufügen: {reason}",
    "source_quota": "Dieser Chat hat schon {n} Feeds hinzugefügt, mehr geht nicht.",
    "source_error": "Fehler",
    "why_flagged": "{title}\nWert {score:.2f} wegen: {reasons}",
    "no_article": "Diesen Artikel gibt es nicht: {id}",
    "thanks": "Danke — Ihre Rückmeldung trainiert den Klassifikator dieser Installation.",
    "failed": "Das hat leider nicht geklappt; bitte später noch einmal versuchen.",
}

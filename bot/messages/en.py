"""English phrases. `{p}` is how the platform writes a command ("/" or "/newsbot ")."""

MESSAGES: dict[str, str] = {
    # --- posts (render) ---
    "dont_know": "I don't know — the articles don't say.",
    "source": "Source",
    "sources": "Sources",
    "why": "Why flagged",
    "who": "Who",
    "where": "Where",
    "also": "Also reported by",
    "digest": "Conflict digest",
    "items": "{n} item(s)",
    "since": "since {since}",
    "empty": "No new conflict-related articles.",
    "alert": "Alert",
    "other": "Other",
    "score": "score {score:.2f}",
    "digest_continued": "Conflict digest (continued)",
    # --- buttons ---
    "button_why": "Why?",
    "button_up": "👍 relevant",
    "button_down": "👎 not relevant",
    # --- conversation ---
    "help_intro": "newsbot watches the news for war, terrorism, military tension and conflict "
    "diplomacy.",
    "help_settings": "   {p}settings digest 07:30 Europe/Berlin | digest every 6 | digest off\n"
    "   {p}settings alerts on|off | threshold 0.85 | quiet 22:00-07:00 | lang de\n"
    "   {p}settings countries Ukraine,Syria | include word,… | exclude word,…",
    "help_sources": "   {p}sources add URL, {p}sources remove ID (admins)",
    "help_question": "Or just ask a question; reply to an alert to ask about that article.",
    "subscribed": "Subscribed: this chat will receive alerts and digests.",
    "already": "This chat is already subscribed.",
    "unsubscribed": "Unsubscribed: no more alerts or digests here.",
    "not_subscribed": "This chat is not subscribed.",
    "unknown": "Unknown command {command}. Send {p}help for the list.",
    "admins_only": "Only chat administrators can do that.",
    "empty_question": "Ask a question after {p}ask, e.g. {p}ask who attends from Germany?",
    "slow_down": "You're asking quickly — please wait {seconds} s before the next question.",
    "slow_down_commands": "That's a lot of commands at once — please wait {seconds} s.",
    "question_too_long": "That question is too long ({n} characters); please keep it under "
    "{limit}.",
    "settings": "Subscribed: {subscribed}. Language: {lang}. Alerts: {alerts} (from score "
    "{alert:.2f}). Digest: {digest}. Quiet hours: {quiet}. Countries: {countries}. "
    "Include: {include}. Exclude: {exclude}.",
    "yes": "yes",
    "no": "no",
    "on": "on",
    "off": "off",
    "none": "none",
    "daily": "daily at {at} ({tz})",
    "every": "every {hours} h",
    "saved": "Saved. {summary}",
    "subscribe_first": "Subscribe first with {p}subscribe.",
    "bad_setting": "Can't use that: {error}. Send {p}help for examples.",
    "sources_list": "Feeds this chat added:\n{lines}",
    "no_sources": "This chat has not added any feeds. Add one with {p}sources add URL.",
    "source_added": "Added feed {url}; it is polled every {minutes} minutes.",
    "source_known": "That feed is already watched.",
    "source_removed": "Removed feed {source}.",
    "source_unknown": "This chat added no feed {source}.",
    "source_refused": "Can't add that feed: {reason}",
    "source_quota": "This chat already added {n} feeds, the most allowed.",
    "source_error": "error",
    "why_flagged": "{title}\nScore {score:.2f} because of: {reasons}",
    "no_article": "No such article: {id}",
    "thanks": "Thanks — your feedback trains this deployment's classifier.",
    "failed": "Sorry, that failed; please try again later.",
}

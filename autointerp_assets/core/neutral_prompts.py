"""The built-in neutral prompts of steering (no torch: the config validates against their number)."""

# Neutral prompts (ours): short, everyday openings with no topic the continuation must follow. The first
# ``n_explain`` of the list serve the output-centric explainers, the next ``n_score`` the intervention
# scorer, so an explainer never sees the prompts it is scored on.
NEUTRAL_PROMPTS: tuple[str, ...] = (
    "The", "In the morning,", "I think that", "It was a", "She said that", "One of the most",
    "There is a", "We decided to", "After a while,", "He looked at the", "My favourite", "The best way to",
    "Yesterday I saw", "This is why", "They found a", "At the end of the day,", "When I was young,",
    "The next step is", "You can find", "Everyone knows that", "It is important to", "Here is a",
    "On the other hand,", "Last week, we", "A few years ago,", "The problem with", "If you want to",
    "Most people", "In this section, we", "The first thing", "Let me tell you about", "We talked about",
    "I would like to", "It seems that", "According to the", "Later that night,", "The main reason",
    "Once upon a time,", "For example,", "So far, the",
)

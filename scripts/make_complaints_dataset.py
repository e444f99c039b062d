"""Write minipeft/book/complaints.jsonl: short customer-service posts labelled complaint / no complaint.

The book needs a task in the style of RAFT's twitter_complaints (Tweet text : ... Label : complaint)
that runs offline. This script composes posts from hand-written fragments: 14 industries with their
own brands, products, problems and praise, and 20 post styles (plain, question, sarcasm, praise with
a problem inside, a resolved problem, neutral questions, ...). Typos are added to some posts. The
result is deterministic (seed 0), balanced, de-duplicated, and split into train / validation / test.
See minipeft/book/DATASHEET.md.

Usage: python scripts/make_complaints_dataset.py
"""

from __future__ import annotations

import json
import random
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "minipeft" / "book" / "complaints.jsonl"
SPLITS = {"train": 480, "validation": 96, "test": 192}

# industry: (handle, [(thing, problem, consequence)], [praise], [neutral question])
INDUSTRIES = {
    "airline": (
        "@SkyJetAir",
        [
            ("flight to Denver", "was cancelled with no warning", "now I'm stuck at the gate"),
            ("checked bag", "never arrived", "three days and still nothing"),
            ("seat", "got changed to a middle seat without asking", "paid extra for that aisle"),
            ("refund", "still hasn't come through", "it's been six weeks"),
        ],
        [
            "the crew on flight 212 was amazing",
            "the upgrade to business made my day",
            "smooth landing and early arrival",
        ],
        [
            "can I bring a guitar as carry-on",
            "what is the baggage allowance to Lisbon",
            "do you fly to Reykjavik in winter",
        ],
    ),
    "telecom": (
        "@TelcoOne",
        [
            ("phone bill", "charged me twice this month", "nobody on the phone can explain it"),
            ("signal", "keeps dropping in my own house", "I can't even make a call"),
            ("new SIM", "was never activated", "I've been offline since Monday"),
            ("data plan", "ran out after two days", "the speed is useless now"),
        ],
        [
            "the new 5G is really fast here",
            "your store staff sorted my phone in minutes",
            "the roaming deal saved me money",
        ],
        ["how do I transfer my number", "is there a family plan", "when does the new phone launch"],
    ),
    "bank": (
        "@NorthBank",
        [
            ("card", "was blocked while I was abroad", "couldn't pay for dinner"),
            ("app", "logs me out every five minutes", "I can't check my balance"),
            ("transfer", "has been pending for a week", "rent is due tomorrow"),
            ("account", "was charged a fee I never agreed to", "and support just reads a script"),
        ],
        [
            "the savings app is brilliant",
            "opening an account took ten minutes",
            "your fraud team caught a fake charge fast",
        ],
        [
            "what are your opening hours on Saturday",
            "can I order a card in a different color",
            "do you offer student accounts",
        ],
    ),
    "food delivery": (
        "@QuickBite",
        [
            ("order", "arrived cold and an hour late", "the fries were soggy"),
            ("delivery", "was marked as delivered but never came", "I'm still hungry"),
            ("pizza", "was missing half the toppings", "not what I paid for"),
            ("promo code", "doesn't work at checkout", "it says invalid every time"),
        ],
        ["the driver was so friendly", "dinner arrived in twenty minutes", "the new vegan menu is great"],
        ["do you deliver after midnight", "can I schedule an order for tomorrow", "is there a tip option in the app"],
    ),
    "online shop": (
        "@ShopMart",
        [
            ("package", "was left in the rain", "everything inside is wet"),
            ("return", "was rejected for no reason", "the item was unopened"),
            ("order", "shipped the wrong size", "second time this month"),
            ("headphones", "broke after one week", "and the warranty page is a dead link"),
        ],
        ["the package came a day early", "the return was super easy", "great prices in the sale"],
        ["do you ship to Canada", "when is the next sale", "can I change my delivery address"],
    ),
    "energy": (
        "@VoltPower",
        [
            ("electricity bill", "doubled this month", "we used less power than last year"),
            ("power", "has been out for ten hours", "the food in the fridge is ruined"),
            ("meter reading", "is completely wrong", "I sent photos twice"),
            ("direct debit", "took money twice", "now I'm overdrawn"),
        ],
        [
            "the engineer fixed our meter quickly",
            "switching to green energy was easy",
            "the outage map is really helpful",
        ],
        ["how do I submit a meter reading", "do you offer solar panels", "what is the price per kWh"],
    ),
    "internet": (
        "@FiberNet",
        [
            ("wifi", "drops every evening", "working from home is impossible"),
            ("installation", "was missed again", "I took the day off for nothing"),
            ("speed", "is a tenth of what I pay for", "speed tests don't lie"),
            ("router", "stopped working after the update", "no internet all weekend"),
        ],
        ["fiber is a game changer", "the technician was on time and tidy", "zero downtime this year"],
        ["is fiber available on Elm Street", "can I pause my contract while abroad", "what router do you provide"],
    ),
    "ride hailing": (
        "@RideNow",
        [
            ("driver", "cancelled after I waited twenty minutes", "missed my train"),
            ("fare", "was triple the estimate", "for a ten minute ride"),
            ("account", "got suspended for no reason", "support won't reply"),
            ("lost phone", "report has had no answer", "the driver has it"),
        ],
        ["my driver tonight was a legend", "the airport pickup was seamless", "cheapest ride in town"],
        ["can I book a ride for a group of six", "do you have child seats", "how do I add a stop"],
    ),
    "hotel": (
        "@StayInn",
        [
            ("room", "smelled of smoke", "we asked to move and got ignored"),
            ("booking", "disappeared from the system", "we arrived to no room"),
            ("shower", "had no hot water all week", "for that price"),
            ("deposit", "was never returned", "it's been a month"),
        ],
        ["the breakfast buffet was fantastic", "the staff upgraded us for our anniversary", "best view I've had"],
        ["is parking included", "do you allow pets", "what time is check-in"],
    ),
    "streaming": (
        "@StreamFlix",
        [
            ("subscription", "renewed after I cancelled it", "charged again"),
            ("app", "crashes every time I open a show", "on every device"),
            ("stream", "buffers constantly", "my internet is fine"),
            ("account", "was hacked and support is useless", "someone changed my email"),
        ],
        ["the new season is incredible", "offline downloads saved my flight", "loving the documentaries"],
        ["when does season 3 come out", "can I share my account with family", "is there a student discount"],
    ),
    "insurance": (
        "@SafeGuardIns",
        [
            ("claim", "was denied without explanation", "after ten years as a customer"),
            ("premium", "went up 40 percent", "no accidents, no claims"),
            ("call", "was on hold for two hours", "then it hung up"),
            ("documents", "were lost again", "I sent them three times"),
        ],
        ["the claim was paid in a week", "your agent explained everything clearly", "renewal was painless"],
        ["does my policy cover travel", "how do I add a driver", "can I pay monthly"],
    ),
    "public transport": (
        "@CityMetro",
        [
            ("train", "is late every single morning", "late for work again"),
            ("ticket machine", "ate my money", "and there's no staff around"),
            ("bus", "drove past the stop without stopping", "I was waving"),
            ("monthly pass", "stopped scanning", "got fined for it"),
        ],
        ["the new trains are so clean", "the night bus saved me", "the app shows real times now"],
        ["does the airport line run on Sunday", "can I bring a bike on the train", "where can I buy a weekly pass"],
    ),
    "gaming": (
        "@PixelPlay",
        [
            ("game", "keeps crashing on launch", "since the last patch"),
            ("purchase", "never showed up in my library", "paid 60 dollars"),
            ("servers", "have been down all evening", "during the event"),
            ("progress", "got wiped after the update", "200 hours gone"),
        ],
        ["the new update is amazing", "best multiplayer event so far", "thanks for the free DLC"],
        ["is crossplay coming", "when does the season pass end", "will there be a PC version"],
    ),
    "software": (
        "@TaskApp",
        [
            ("sync", "deleted half my notes", "months of work"),
            ("login", "fails with an error code", "locked out of my own data"),
            ("update", "made everything slower", "it used to be fast"),
            ("export", "produces empty files", "I need this for a report"),
        ],
        ["the dark mode is beautiful", "this app organized my whole semester", "the new calendar view is great"],
        ["is there a Linux version", "can I import from a spreadsheet", "how do I share a board"],
    ),
}

COMPLAINT_STYLES = [
    "{h} my {thing} {problem}. {consequence}.",
    "{h} why is my {thing} {problem_again}? {consequence}.",
    "Wow {h}, my {thing} {problem}. Truly outstanding service.",
    "Great job {h}, {thing} {problem} again. Love it. Really.",
    "{h} I love {praise_lower}, but my {thing} {problem}.",
    "Honestly disappointed. {h} my {thing} {problem} and {consequence_lower}.",
    "{h} third time asking: my {thing} {problem}. Anyone there?",
    "Is anyone at {h} going to explain why my {thing} {problem}?",
]
NO_COMPLAINT_STYLES = [
    "{h} thank you, {praise_lower}!",
    "Shout out to {h}, {praise_lower}.",
    "{h} quick question: {question}?",
    "Hey {h}, {question}?",
    "{h} my {thing} {problem}, but you fixed it within an hour. Thanks!",
    "Just booked with {h} again, {praise_lower}.",
    "{h} {praise_cap}. Keep it up.",
    "Asking for a friend: {h}, {question}?",
    "{h} {praise_cap}! Also, {question}?",
    "Big thanks {h}: {praise_lower}. One more thing, {question}?",
    "Told all my friends about {h}, {praise_lower}.",
    "{h} any news on this: {question}?",
]


def add_typos(text: str, rng: random.Random) -> str:
    """Swap two neighbouring letters in one or two words, drop a letter in another: the way people type."""
    words = text.split(" ")
    for _ in range(rng.randint(1, 2)):
        i = rng.randrange(len(words))
        w = words[i]
        if len(w) > 4 and w.isalpha():
            j = rng.randrange(1, len(w) - 2)
            words[i] = w[:j] + w[j + 1] + w[j] + w[j + 2 :] if rng.random() < 0.6 else w[:j] + w[j + 1 :]
    return " ".join(words)


def compose(rng: random.Random) -> list[dict]:
    rows = []
    for industry, (handle, problems, praises, questions) in INDUSTRIES.items():
        for thing, problem, consequence in problems:
            for style_id, style in enumerate(COMPLAINT_STYLES):
                text = style.format(
                    h=handle,
                    thing=thing,
                    problem=problem,
                    problem_again=problem.replace("was ", "again ").replace("has ", "has again ", 1),
                    consequence=consequence[0].upper() + consequence[1:],
                    consequence_lower=consequence,
                    praise_lower=rng.choice(praises),
                )
                rows.append({"text": text, "label": "complaint", "industry": industry, "style": f"c{style_id}"})
        for style_id, style in enumerate(NO_COMPLAINT_STYLES):
            for k in range(6):
                thing, problem, _ = problems[k % len(problems)]
                question = questions[(k + k // 3) % len(questions)]
                praise = praises[k % len(praises)]
                text = style.format(
                    h=handle,
                    thing=thing,
                    problem=problem,
                    praise_lower=praise,
                    praise_cap=praise[0].upper() + praise[1:],
                    question=question,
                )
                rows.append({"text": text, "label": "no complaint", "industry": industry, "style": f"n{style_id}"})
    return rows


def main() -> None:
    rng = random.Random(0)
    rows = compose(rng)
    seen, unique = set(), []
    for row in rows:
        if row["text"] not in seen:
            seen.add(row["text"])
            unique.append(row)
    for row in unique:
        row["typos"] = rng.random() < 0.15
        if row["typos"]:
            row["text"] = add_typos(row["text"], rng)
    by_label = {label: [r for r in unique if r["label"] == label] for label in ("complaint", "no complaint")}
    per_label = sum(SPLITS.values()) // 2
    for label, items in by_label.items():
        if len(items) < per_label:
            raise SystemExit(f"only {len(items)} {label} posts, need {per_label}")
        rng.shuffle(items)
        by_label[label] = items[:per_label]
    out = []
    start = 0
    for split, size in SPLITS.items():
        half = size // 2
        chosen = (
            by_label["complaint"][start // 2 : start // 2 + half]
            + by_label["no complaint"][start // 2 : start // 2 + half]
        )
        rng.shuffle(chosen)
        out += [{"id": f"{split}-{i:03d}", "split": split, **row} for i, row in enumerate(chosen)]
        start += size
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in out))
    print(f"wrote {len(out)} posts to {OUT} ({', '.join(f'{k} {v}' for k, v in SPLITS.items())})")


if __name__ == "__main__":
    main()

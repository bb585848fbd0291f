"""The compact demo style: short dense resumes (about 130 words and 25 entities each).

The demo data of earlier versions, kept byte for byte (the same seed gives the same bytes as
before, so fingerprints of studies made on it still match): quick tests and examples that
only need some labelled data use it. Resumes vary in section order, headings, bullet styles,
date formats and contact lines, and hold all ten entity types.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from .demo_words import (
    CITIES,
    COLLEGES,
    COMPANIES,
    DEGREES,
    DOMAINS,
    FIRST,
    LAST,
    MONTHS,
    OBJECTS,
    OUTCOMES,
    SKILLS,
    TITLES,
    VERBS,
    Builder,
)

__all__ = ["resume"]


def _date(rng: random.Random, year: int) -> str:
    style = rng.randrange(3)
    if style == 0:
        return f"{rng.choice(MONTHS)} {year}"
    if style == 1:
        return f"{rng.randint(1, 12):02d}/{year}"
    return str(year)


@dataclass
class _Person:
    """What one synthetic resume says, drawn before its sections are written."""

    title: str
    years: int
    grad_year: int
    companies: list[str]
    skills: list[str]
    bullet: str


def _summary(b: Builder, rng: random.Random, p: _Person) -> None:
    b.add(rng.choice(["SUMMARY\n", "Profile\n", "Professional Summary:\n", "About me\n"]))
    b.add(rng.choice(["Results-driven ", "Experienced ", "Motivated ", ""]))
    b.add(p.title, "DESIGNATION")
    b.add(" with ")
    b.add(f"{p.years}{rng.choice(['+', ''])} years", "YEARS_OF_EXPERIENCE")
    b.add(rng.choice([" of experience in ", " of hands-on experience with ", " working on "]))
    b.add(p.skills[0], "SKILL")
    b.add(" and ")
    b.add(p.skills[1], "SKILL")
    b.add(".\n\n")


def _experience(b: Builder, rng: random.Random, p: _Person) -> None:
    b.add(rng.choice(["EXPERIENCE\n", "Work Experience\n", "Professional Experience:\n",
                      "Employment History\n"]))
    year = 2024
    for company in p.companies:
        start = year - rng.randint(1, 4)
        role = rng.choice(TITLES) if rng.random() < 0.5 else p.title
        if rng.random() < 0.5:
            b.add(role, "DESIGNATION")
            b.add(rng.choice([" at ", ", ", " - "]))
            b.add(company, "COMPANY")
        else:
            b.add(company, "COMPANY")
            b.add(rng.choice([" | ", " - ", "\n"]))
            b.add(role, "DESIGNATION")
        b.add(f" ({_date(rng, start)} - {rng.choice(['Present', _date(rng, year)])})\n")
        for _ in range(rng.randint(1, 3)):
            b.add(f"{p.bullet}{rng.choice(VERBS)} {rng.choice(OBJECTS)} using ")
            b.add(rng.choice(p.skills), "SKILL")
            b.add(f", {rng.choice(OUTCOMES)}.\n")
        year = start
    b.add("\n")


def _education(b: Builder, rng: random.Random, p: _Person) -> None:
    b.add(rng.choice(["EDUCATION\n", "Education\n", "Academic Qualifications:\n",
                      "Qualifications\n"]))
    b.add(p.bullet)
    b.add(rng.choice(DEGREES), "DEGREE")
    b.add(rng.choice([", ", " from ", " - "]))
    b.add(rng.choice(COLLEGES), "COLLEGE")
    b.add(rng.choice([", ", " (", " | Graduated "]))
    b.add(str(p.grad_year), "GRADUATION_YEAR")
    b.add(")\n\n" if b.parts[-2] == " (" else "\n\n")


def _skills(b: Builder, rng: random.Random, p: _Person) -> None:
    b.add(rng.choice(["SKILLS\n", "Technical Skills:\n", "Key Skills\n", "Skill Set\n"]))
    sep = rng.choice([", ", " | ", "\n" + p.bullet])
    if sep.startswith("\n"):
        b.add(p.bullet)
    for i, skill in enumerate(p.skills):
        if i:
            b.add(sep)
        b.add(skill, "SKILL")
    b.add("\n\n")


def resume(rng: random.Random) -> dict:
    """One compact resume drawn from ``rng``."""
    b = Builder()
    first, last = rng.choice(FIRST), rng.choice(LAST)
    name = f"{first} {last}" if rng.random() < 0.8 else f"{first.upper()} {last.upper()}"
    email = f"{first.lower()}{rng.choice(['.', '_', ''])}{last.lower()}" \
            f"{rng.choice(['', str(rng.randint(1, 99))])}@{rng.choice(DOMAINS)}"
    city = rng.choice(CITIES)
    years = rng.randint(1, 15)
    grad_year = 2024 - years - rng.randint(0, 2)
    title = rng.choice(TITLES)
    companies = rng.sample(COMPANIES, rng.randint(1, 3))
    skills = rng.sample(SKILLS, rng.randint(4, 10))
    bullet = rng.choice(["- ", "* ", "• ", "  "])
    person = _Person(title, years, grad_year, companies, skills, bullet)

    # Header and contact line.
    b.add(name, "NAME")
    b.add("\n")
    if rng.random() < 0.7:
        b.add(title, "DESIGNATION")
        b.add(" - ")
    b.add(city, "LOCATION")
    b.add(rng.choice([", India", "", ", Remote"]) if rng.random() < 0.5 else "")
    b.add(rng.choice(["\nEmail: ", " | ", "\nE-mail ", "\n"]))
    b.add(email, "EMAIL")
    b.add(f" | Phone: +{rng.randint(1, 99)} {rng.randint(6000000000, 9999999999)}\n\n")

    sections = [_summary, _experience, _education, _skills]
    head, rest = sections[0], sections[1:]
    rng.shuffle(rest)
    for section in ([head] if rng.random() < 0.8 else []) + rest:
        section(b, rng, person)
    return {"text": b.text().rstrip() + "\n", "annotations": b.spans}

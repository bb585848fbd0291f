"""The realistic demo style: long, sparse, noisy resumes with the statistics of real ones.

Targets (issue 21, measured on a real export of about 200 resumes; the statistics are matched,
never one set's quirks): a long-tailed length (median about 400 words, 10th percentile under
100, 90th over 1,000, a few near 3,000), about 13 entities per resume (mean about 16), over 90%
of words outside entities, YEARS_OF_EXPERIENCE rare (1-2% of entities) and GRADUATION_YEAR
rare-ish (a few %).

Annotation policy (consistent, so that a model can learn it; real exports annotate some
mentions and skip others, which only adds noise to a demo):

* the candidate's name, e-mail, locations (cities), designations, companies, skills, degrees
  and colleges are annotated at every mention, wherever it is (header, summary, jobs,
  projects, declaration), and the prose never holds one of those strings unannotated;
* GRADUATION_YEAR is the year a degree was completed, in the education section (the end of a
  ``2011 - 2015`` range); other years (job dates, the birth date) are not annotated;
* YEARS_OF_EXPERIENCE is the candidate's total experience (``6+ years of experience``,
  ``Total Experience: 4.5 years``); durations of single jobs (``2 yrs 3 mos``) are not.

Not annotated, as in real exports: phone numbers, URLs, street addresses, dates.

Noise: bullets of several styles, tables flattened to text (pipes, tabs, aligned spaces), line
breaks inside names and company names, e-mail/phone/URL variants (LinkedIn, GitHub), upper-case
and letter-spaced headings, typos, dates in many formats, page furniture, and long sections
without entities (summaries, responsibilities, project descriptions, hobbies, references).

Length: a document's word target is drawn first; the layout (which sections, which formats)
is drawn from its own random stream, and the prose from another, so the resume is written
twice: once with the least prose, to count the words the layout takes, then with the prose
budget that brings it to the target.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from .dataset import word_spans
from .demo_words import (
    ACHIEVEMENTS,
    BULLETS,
    CERTIFICATES,
    DECLARATIONS,
    DEGREE_SCORES,
    DUTY_CONTEXTS,
    DUTY_OBJECTS,
    DUTY_OUTCOMES,
    DUTY_VERBS,
    HOBBIES,
    MONTHS,
    MORE_CITIES,
    MORE_COLLEGES,
    MORE_COMPANIES,
    MORE_DEGREES,
    MORE_DOMAINS,
    MORE_FIRST,
    MORE_LAST,
    MORE_SKILLS,
    MORE_TITLES,
    PAGE_NOISE,
    PROJECT_ADJ,
    PROJECT_DOMAIN,
    PROJECT_KIND,
    PROJECT_SENTENCES,
    REFERENCES,
    SKILL_GROUPS,
    SPOKEN,
    SUMMARY_SENTENCES,
    Builder,
)

__all__ = ["resume"]

FULL_MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
               "September", "October", "November", "December"]
NOW = 2024


# ---- what one resume says ----------------------------------------------------------------------

@dataclass
class _Job:
    company: str
    title: str
    city: str | None
    start: tuple[int, int]
    end: tuple[int, int] | None  # None: the current job


@dataclass
class _Degree:
    degree: str
    college: str
    city: str | None
    year: int
    shown: str  # "year" | "range" | "none": how the completion year is written


@dataclass
class _Profile:
    first: str
    last: str
    name: str  # as written in the header
    email: str
    phone: str
    urls: list[str]
    city: str
    title: str
    years: float
    jobs: list[_Job]
    degrees: list[_Degree]
    skills: list[str]
    stub: bool
    yoe: str | None = None  # the total experience as written, when the resume states it
    yoe_where: str = ""  # "summary" | "header" | "personal"


@dataclass
class _Style:
    bullet: str
    heading: int
    date: int
    range_sep: str
    present: str
    table: str  # the column separator of flattened tables
    job_format: int


def _name_as_written(rng: random.Random, first: str, last: str) -> str:
    roll = rng.random()
    if roll < 0.55:
        return f"{first} {last}"
    if roll < 0.75:
        return f"{first.upper()} {last.upper()}"
    if roll < 0.85:
        return f"{first} {rng.choice('ABCDEGKLMNPRSTV')}. {last}"
    if roll < 0.93:
        return f"{first}\n{last}"  # a line break inside the name (a two-line header)
    return f"{first.upper()}\n{last.upper()}"


def _email(rng: random.Random, first: str, last: str) -> str:
    f, la = first.lower(), last.lower()
    user = rng.choice([f"{f}.{la}", f"{f}{la}", f"{f}_{la}", f"{f[0]}.{la}", f"{f}{la[0]}",
                       f"{la}.{f}", f"{f}.{la}{rng.randint(1, 99)}", f"{f}{rng.randint(80, 99)}",
                       f"{f}.{la}+jobs", f"{f}-{la}"])
    address = f"{user}@{rng.choice(MORE_DOMAINS)}"
    return address.upper() if rng.random() < 0.04 else address


def _phone(rng: random.Random) -> str:
    d = "".join(str(rng.randint(0, 9)) for _ in range(9))
    lead = str(rng.choice([6, 7, 8, 9]))
    n = lead + d
    return rng.choice([f"+91 {n[:5]} {n[5:]}", f"+91-{n}", f"0{n}", n, f"{n[:5]}-{n[5:]}",
                       f"({n[:3]}) {n[3:6]}-{n[6:]}", f"+1 {n[:3]} {n[3:6]} {n[6:]}",
                       f"+44 {n[:2]} {n[2:6]} {n[6:]}", f"+91 80 {n[:4]} {n[4:8]}",
                       f"+91 {n[:3]} {n[3:6]} {n[6:]}"])


def _urls(rng: random.Random, first: str, last: str) -> list[str]:
    f, la = first.lower(), last.lower()
    hexa = "".join(rng.choice("0123456789abcdef") for _ in range(rng.choice([6, 8])))
    out = []
    if rng.random() < 0.45:
        out.append(rng.choice([f"linkedin.com/in/{f}-{la}-{hexa}",
                               f"https://www.linkedin.com/in/{f}{la}/",
                               f"www.linkedin.com/in/{f}-{la}", f"in/{f}{la}{hexa[:3]}"]))
    if rng.random() < 0.2:
        out.append(rng.choice([f"github.com/{f}{la[0]}", f"https://github.com/{f}-{la}",
                               f"https://{f}{la}.github.io"]))
    return out


def _jobs(rng: random.Random, n: int, title: str, cities: list[str]) -> list[_Job]:
    jobs = []
    year, month = NOW, rng.randint(1, 12)
    for i in range(n):
        length = rng.randint(6, 48)
        start_index = year * 12 + month - 1 - length
        start = (start_index // 12, start_index % 12 + 1)
        company = rng.choice(MORE_COMPANIES)
        if rng.random() < 0.3:
            company += rng.choice([" Ltd.", " Limited", " Pvt. Ltd.", " Inc.", " LLP"])
        role = title if i == 0 or rng.random() < 0.35 else rng.choice(MORE_TITLES)
        city = rng.choice(cities) if rng.random() < 0.2 else None
        jobs.append(_Job(company, role, city, start, None if i == 0 else (year, month)))
        gap = rng.randint(0, 4)
        year, month = divmod(start[0] * 12 + start[1] - 1 - gap, 12)
        month += 1
    return jobs


def _degrees(rng: random.Random, n: int, first_job_year: int) -> list[_Degree]:
    out = []
    year = first_job_year - rng.randint(0, 1)
    for _ in range(n):
        shown = rng.choices(["year", "range", "none"], [0.27, 0.18, 0.55])[0]
        city = rng.choice(MORE_CITIES) if rng.random() < 0.15 else None
        out.append(_Degree(rng.choice(MORE_DEGREES), rng.choice(MORE_COLLEGES), city, year,
                           shown))
        year -= rng.randint(2, 4)
    return out


def _target_words(rng: random.Random) -> int:
    """The long-tailed length: stubs (a header and a few lines), most lognormal, a few long
    CVs (a career's every project)."""
    roll = rng.random()
    if roll < 0.15:
        return rng.randint(30, 100)
    median = 1900 if roll > 0.98 else 470
    return min(3000, int(rng.lognormvariate(math.log(median), 0.7 if median < 1000 else 0.25)))


def _profile(rng: random.Random, target: int) -> _Profile:
    first, last = rng.choice(MORE_FIRST), rng.choice(MORE_LAST)
    stub = target <= 100
    n_jobs = 0 if stub and rng.random() < 0.5 else max(1 if stub else 0, min(
        7, int(0.5 + 1.2 * math.log2(max(target, 150) / 200) + rng.gauss(0, 0.7))))
    title = rng.choice(MORE_TITLES)
    jobs = _jobs(rng, min(n_jobs, 1) if stub else n_jobs, title, MORE_CITIES)
    first_year = jobs[-1].start[0] if jobs else NOW - rng.randint(0, 1)
    years = round((NOW - first_year) + rng.random(), 1) if jobs else 0.0
    n_degrees = 0 if stub and rng.random() < 0.6 else rng.choices([1, 2, 3], [0.7, 0.25, 0.05])[0]
    degrees = _degrees(rng, min(n_degrees, 1) if stub else n_degrees, first_year)
    n_skills = rng.randint(1, 4) if stub else min(40, round(rng.lognormvariate(
        math.log(0.8 + target / 250), 0.8)))
    p = _Profile(first, last, _name_as_written(rng, first, last), _email(rng, first, last),
                 _phone(rng), _urls(rng, first, last), rng.choice(MORE_CITIES), title, years,
                 jobs, degrees, rng.sample(MORE_SKILLS, n_skills), stub)
    if jobs and not stub and years >= 1 and rng.random() < 0.4:
        whole = int(years)
        p.yoe = rng.choice([f"{whole}+ years", f"{whole} years", f"{years} years",
                            f"{whole} Years", f"{whole}+ Years", f"{whole} yrs"])
        p.yoe_where = rng.choices(["summary", "header", "personal"], [0.7, 0.15, 0.15])[0]
    return p


def _style(rng: random.Random) -> _Style:
    return _Style(bullet=rng.choice(BULLETS), heading=rng.choices(range(6), [4, 3, 3, 2, 1, 1])[0],
                  date=rng.randrange(12), range_sep=rng.choice([" - ", " \u2013 ", " to ", "-",
                                                                " \u2014 ", " till ", " ~ "]),
                  present=rng.choice(["Present", "Till Date", "Current", "Now", "till date",
                                      "Ongoing", "present", "Date"]),
                  table=rng.choice([" | ", "\t", "    ", " || ", "\t\t", " : "]),
                  job_format=rng.randrange(6))


# ---- the writer ---------------------------------------------------------------------------------

@dataclass
class _Writer:
    """One resume being written: the builder, the layout and prose random streams, the style
    and the prose budget of each slot (``None``: the least prose, to measure the layout)."""

    p: _Profile
    s: _Style
    lay: random.Random
    pr: random.Random
    budgets: dict[str, int] | None
    b: Builder = field(default_factory=Builder)
    slot_words: dict[str, int] = field(default_factory=dict)
    slot_weights: dict[str, float] = field(default_factory=dict)

    def add(self, text: str, label: str | None = None) -> None:
        self.b.add(text, label)

    def entity(self, text: str, label: str) -> None:
        """An entity; a multi-word company sometimes breaks across lines (companies are
        written by the layout only: prose slots never draw from the layout stream)."""
        if label == "COMPANY" and " " in text and self.lay.random() < 0.06:
            cut = self.lay.choice([i for i, c in enumerate(text) if c == " "])
            text = text[:cut] + "\n" + text[cut + 1:]
        self.b.add(text, label)

    def heading(self, names: list[str]) -> None:
        name = self.lay.choice(names)
        if self.lay.random() < 0.03:
            name = _typo(self.lay, name)
        mode = self.s.heading
        if mode == 0:
            text = name.upper()
        elif mode == 1:
            text = name
        elif mode == 2:
            text = name + self.lay.choice([":", " :", ":-"])
        elif mode == 3:
            text = name.upper() + "\n" + self.lay.choice("-=_") * (len(name) + 2)
        elif mode == 4:
            text = "  ".join(" ".join(word.upper()) for word in name.split())
        else:
            text = self.lay.choice(["\u25a0 ", "# ", "\u2756 ", ">> "]) + name.upper()
        self.add(f"\n{text}\n" + ("\n" if self.lay.random() < 0.4 else ""))

    def slot(self, name: str, weight: float, write: Callable[[], None], least: int = 1) -> None:
        """Prose: ``write`` at least ``least`` times, then until the slot's budget is spent.

        Only the prose stream may be drawn from in ``write`` (the layout stream must be drawn
        the same in both passes)."""
        self.slot_weights[name] = weight
        budget = (self.budgets or {}).get(name, 0)
        done = words = 0
        while done < least or words < budget:
            k = len(self.b.parts)
            write()
            words += len(word_spans("".join(self.b.parts[k:])))
            done += 1
        self.slot_words[name] = words


def _typo(rng: random.Random, text: str) -> str:
    """One typing slip in a word of five letters or more (swap, drop or double a letter)."""
    words = [i for i, w in enumerate(text.split(" ")) if len(w) >= 5 and w.isalpha()]
    if not words:
        return text
    parts = text.split(" ")
    i = rng.choice(words)
    w = parts[i]
    k = rng.randrange(1, len(w) - 1)
    kind = rng.randrange(3)
    if kind == 0:
        w = w[:k] + w[k + 1] + w[k] + w[k + 2:]
    elif kind == 1:
        w = w[:k] + w[k + 1:]
    else:
        w = w[:k] + w[k] + w[k:]
    parts[i] = w
    return " ".join(parts)


def _date(w: _Writer, ym: tuple[int, int] | None) -> str:
    if ym is None:
        return w.s.present
    y, m = ym
    mon, full = MONTHS[m - 1], FULL_MONTHS[m - 1]
    forms = [f"{mon} {y}", f"{full} {y}", f"{m:02d}/{y}", f"{m}/{y}", f"{y}-{m:02d}",
             f"{mon}'{y % 100:02d}", f"{mon}-{y % 100:02d}", f"{mon}. {y}", str(y),
             f"{m:02d}.{y}", f"{mon.upper()} {y}", f"{mon}, {y}"]
    style = w.s.date if w.lay.random() < 0.9 else w.lay.randrange(len(forms))
    return forms[style]


def _duration(w: _Writer, job: _Job) -> str:
    end = job.end or (NOW, 6)
    months = max(1, (end[0] - job.start[0]) * 12 + end[1] - job.start[1])
    y, m = divmod(months, 12)
    return w.lay.choice([f"({y} yrs {m} mos)", f"({months} months)", f"({y}y {m}m)",
                         f"[{months} months]"])


def _sentence(w: _Writer, mention_skill: float = 0.0) -> None:
    """One duty sentence; now and then it names a skill (annotated)."""
    pr = w.pr
    text = f"{pr.choice(DUTY_VERBS)} {pr.choice(DUTY_OBJECTS)}"
    if pr.random() < 0.6:
        text += f" {pr.choice(DUTY_CONTEXTS)}"
    if pr.random() < 0.45:
        text += f", {pr.choice(DUTY_OUTCOMES)}"
    if pr.random() < 0.05:
        text = _typo(pr, text)
    w.add(text)
    if w.p.skills and pr.random() < mention_skill:
        w.add(pr.choice([" using ", " with ", " in "]))
        w.entity(pr.choice(w.p.skills), "SKILL")
    w.add(".")


def _duty_bullet(w: _Writer) -> None:
    w.add(w.s.bullet if w.pr.random() < 0.95 else w.pr.choice(BULLETS))
    _sentence(w, mention_skill=0.06)
    w.add("\n")


def _summary_sentence(w: _Writer) -> None:
    pr = w.pr
    if pr.random() < 0.55:
        w.add(pr.choice(SUMMARY_SENTENCES))
    else:
        opening = pr.choice(["Experienced in", "Hands-on exposure to", "Worked extensively on",
                             "Familiar with", "Good knowledge of", "Responsible for"])
        text = f"{opening} {pr.choice(DUTY_OBJECTS)} {pr.choice(DUTY_CONTEXTS)}."
        w.add(_typo(pr, text) if pr.random() < 0.05 else text)
    w.add(" " if pr.random() < 0.8 else "\n")


def _project_sentence(w: _Writer) -> None:
    if w.pr.random() < 0.6:
        w.add(w.pr.choice(PROJECT_SENTENCES) + " ")
    else:
        _sentence(w, mention_skill=0.05)
        w.add(" ")


# ---- sections -----------------------------------------------------------------------------------

def _pieces(w: _Writer, pieces: list[tuple[str, str | None]]) -> None:
    for text, label in pieces:
        if label:
            w.entity(text, label)
        else:
            w.add(text)


def _contacts(w: _Writer) -> list[list[tuple[str, str | None]]]:
    p, lay = w.p, w.lay
    items: list[list[tuple[str, str | None]]] = []
    if lay.random() < 0.9:
        prefix = lay.choice(["Email: ", "E-mail : ", "Mail: ", "\u2709 ", "", "Email:",
                             "mailto:", "Email ID: ", "E-Mail- "])
        items.append([(prefix, None), (p.email, "EMAIL")])
    if lay.random() < 0.85:
        prefix = lay.choice(["Phone: ", "Mobile: ", "Mob: ", "Ph: ", "\u260e ", "",
                             "Contact No.: ", "Tel: ", "M: "])
        items.append([(prefix + p.phone, None)])
    if lay.random() < 0.8:
        roll = lay.random()
        if roll < 0.3:
            street = lay.choice(["2nd Cross", "MG Road", "Main Street", "Sector 15",
                                 "Church Street", "Lake View Layout"])
            items.append([(f"Address: {lay.randint(1, 220)}, {street}, ", None),
                          (p.city, "LOCATION"), (f" - {lay.randint(100000, 999999)}", None)])
        elif roll < 0.6:
            items.append([(p.city, "LOCATION"), (lay.choice(["", "", " (willing to relocate)",
                                                             " (open to remote work)"]), None)])
        else:
            items.append([(lay.choice(["Location: ", "Current Location: ", "City: "]), None),
                          (p.city, "LOCATION")])
    for url in p.urls:
        prefix = lay.choice(["LinkedIn: ", "", "Profile: "]) if "linkedin" in url or \
            url.startswith("in/") else lay.choice(["GitHub: ", "", "Portfolio: "])
        items.append([(prefix + url, None)])
    lay.shuffle(items)
    return items


def _header(w: _Writer) -> None:
    p, lay = w.p, w.lay
    if lay.random() < 0.12:
        w.add(lay.choice(["RESUME", "CURRICULUM VITAE", "Curriculum Vitae", "Resume",
                          "BIO-DATA"]) + "\n\n")
    w.entity(p.name, "NAME")
    w.add("\n")
    if lay.random() < 0.25:
        w.entity(p.title, "DESIGNATION")
        w.add("\n")
    joiner = lay.choice(["\n", "\n", " | ", "\t", "    ", " \u2022 "])
    for i, item in enumerate(_contacts(w)):
        if i:
            w.add(joiner)
        _pieces(w, item)
    w.add("\n")
    if w.p.yoe and w.p.yoe_where == "header":
        w.add(lay.choice(["Total Experience: ", "Experience: ", "Total Exp - "]))
        w.entity(w.p.yoe, "YEARS_OF_EXPERIENCE")
        w.add("\n")


def _summary(w: _Writer) -> None:
    p, lay = w.p, w.lay
    w.heading(["Summary", "Professional Summary", "Profile", "Career Objective", "Objective",
               "About Me", "Profile Summary", "Career Summary", "Professional Profile"])
    bullets = lay.random() < 0.3
    if bullets:
        w.add(w.s.bullet)
    if w.p.yoe and w.p.yoe_where == "summary":
        w.add(lay.choice(["", "Having ", "Results-driven ", "An experienced ", "Over "]))
        if lay.random() < 0.5:
            w.entity(p.title, "DESIGNATION")
            w.add(" with ")
        w.entity(w.p.yoe, "YEARS_OF_EXPERIENCE")
        w.add(lay.choice([" of experience", " of work experience", " of total experience",
                          " of IT experience", " experience"]))
        _skill_phrase(w)
    elif p.jobs and p.jobs[0].end is None and lay.random() < 0.2:
        w.add(lay.choice(["Currently working with ", "Presently employed at "]))
        w.entity(p.jobs[0].company, "COMPANY")
        w.add(" as ")
        w.entity(p.jobs[0].title, "DESIGNATION")
        w.add(". ")
    elif lay.random() < 0.4:
        w.add(lay.choice(["A ", "Dedicated ", "Motivated ", "Working as a ", "Seasoned "]))
        w.entity(p.title, "DESIGNATION")
        _skill_phrase(w)
    w.add("\n" + w.s.bullet if bullets else "")
    w.slot("summary", 1.0, lambda: _summary_sentence(w))
    w.add("\n")


def _skill_phrase(w: _Writer) -> None:
    lay = w.lay
    if w.p.skills and lay.random() < 0.4:
        w.add(lay.choice([" in ", " with hands-on knowledge of ", ", skilled in "]))
        chosen = lay.sample(w.p.skills, min(len(w.p.skills), lay.randint(1, 2)))
        for i, skill in enumerate(chosen):
            if i:
                w.add(" and ")
            w.entity(skill, "SKILL")
    w.add(". ")


def _skill_text(w: _Writer, skill: str) -> str:
    return _typo(w.lay, skill) if w.lay.random() < 0.02 else skill


def _skills(w: _Writer) -> None:
    p, lay = w.p, w.lay
    w.heading(["Skills", "Technical Skills", "Key Skills", "Skill Set", "Core Competencies",
               "IT Skills", "Technical Proficiency", "Areas of Expertise", "Tools"])
    fmt = lay.randrange(5)
    skills = list(p.skills)
    if fmt == 2:  # a table of skill groups, flattened
        groups = lay.sample(SKILL_GROUPS, max(1, min(len(SKILL_GROUPS), len(skills) // 2)))
        for g, group in enumerate(groups):
            chunk = skills[g::len(groups)]
            if not chunk:
                continue
            w.add(f"{group}{w.s.table}")
            for i, skill in enumerate(chunk):
                w.add(", " if i else "")
                w.entity(_skill_text(w, skill), "SKILL")
            w.add("\n")
        return
    sep = {0: ", ", 1: "\n" + w.s.bullet, 3: lay.choice([" | ", " \u2022 ", " / ", "; "]),
           4: lay.choice(["    ", "\t", "     "])}[fmt]
    if fmt == 1:
        w.add(w.s.bullet)
    for i, skill in enumerate(skills):
        if i:
            w.add("\n" if fmt == 4 and i % 3 == 0 else sep)
        w.entity(_skill_text(w, skill), "SKILL")
    w.add("\n")


def _job_header(w: _Writer, job: _Job) -> None:
    lay = w.lay
    fmt = w.s.job_format if lay.random() < 0.85 else lay.randrange(6)
    d1, d2 = _date(w, job.start), _date(w, job.end)
    dates = f"{d1}{w.s.range_sep}{d2}"
    company: list[tuple[str, str | None]] = [(job.company, "COMPANY")]
    if job.city:
        company += [(lay.choice([", ", " - ", " ("]), None), (job.city, "LOCATION")]
        company += [(")" if company[-2][0] == " (" else "", None)]
    title: list[tuple[str, str | None]] = [(job.title, "DESIGNATION")]
    if fmt == 0:
        parts = title + [("\n", None)] + company + [(f"\n{dates}\n", None)]
    elif fmt == 1:
        parts = company + [(w.s.table, None)] + title + [(f"{w.s.table}{dates}\n", None)]
    elif fmt == 2:
        parts = ([("Worked as ", None)] + title + [(" at ", None)] + company
                 + [(f" from {d1} to {d2}.\n", None)])
    elif fmt == 3:
        parts = [(f"{dates}\t", None)] + company + [("\t", None)] + title + [("\n", None)]
    elif fmt == 4:
        parts = ([("Company: ", None)] + company + [("\nDesignation: ", None)] + title
                 + [(f"\nDuration: {dates} {_duration(w, job)}\n", None)])
    else:
        parts = title + [(" - ", None)] + company + [(f" ({dates})\n", None)]
    _pieces(w, parts)


def _experience(w: _Writer) -> None:
    p, lay = w.p, w.lay
    w.heading(["Work Experience", "Experience", "Professional Experience", "Employment History",
               "Career History", "Work History", "Organisational Experience"])
    if len(p.jobs) > 1 and lay.random() < 0.12:  # an overview table before the details
        w.add(w.s.table.join(["Organisation", "Designation", "Duration"]) + "\n")
        for job in p.jobs:
            _pieces(w, [(job.company, "COMPANY"), (w.s.table, None), (job.title, "DESIGNATION"),
                        (f"{w.s.table}{_date(w, job.start)} - {_date(w, job.end)}\n", None)])
        w.add("\n")
    for i, job in enumerate(p.jobs):
        _job_header(w, job)
        if lay.random() < 0.25:
            w.add(lay.choice(["Responsibilities:", "Roles and Responsibilities:",
                              "Key Responsibilities:", "Job Profile:", "Key Result Areas:"]))
            w.add("\n")
        w.slot(f"job{i}", 2.0 / (1 + i), lambda: _duty_bullet(w), least=1 if i < 3 else 0)
        w.add("\n")


def _project(w: _Writer, k: int) -> None:
    p, lay = w.p, w.lay
    name = f"{lay.choice(PROJECT_ADJ)} {lay.choice(PROJECT_DOMAIN)} {lay.choice(PROJECT_KIND)}"
    label = lay.choice(["Project: ", "Project Title: ", "Title : ", "Project Name - ",
                        f"{k + 1}. ", f"Project #{k + 1}\t"])
    w.add(f"{label}{name}\n")
    if lay.random() < 0.4:
        w.add(lay.choice([f"Duration: {lay.randint(2, 18)} months\n",
                          f"Team Size: {lay.randint(2, 12)}\n",
                          f"Team size : {lay.randint(2, 12)}{w.s.table}Duration : "
                          f"{lay.randint(2, 18)} months\n"]))
    if p.jobs and lay.random() < 0.3:
        w.add(lay.choice(["Role: ", "Role : ", "Role - "]))
        w.entity(lay.choice([p.title, p.jobs[-1].title]), "DESIGNATION")
        w.add("\n")
    w.add(lay.choice(["Description: ", "Description:\n", "Project Description: ", "",
                      "Synopsis: "]))
    w.slot(f"project{k}", 2.5, lambda: _project_sentence(w))
    w.add("\n")
    if lay.random() < 0.35:
        w.add(lay.choice(["Responsibilities:\n", "Roles & Responsibilities:\n",
                          "My contribution:\n"]))
        w.slot(f"project{k}_duties", 1.2, lambda: _duty_bullet(w))
    if p.skills and lay.random() < 0.3:
        w.add(lay.choice(["Environment: ", "Technologies used: ", "Tools: ", "Tech stack - "]))
        for i, skill in enumerate(lay.sample(p.skills, min(len(p.skills), lay.randint(1, 3)))):
            w.add(", " if i else "")
            w.entity(skill, "SKILL")
        w.add("\n")
    w.add("\n")


def _projects(w: _Writer) -> None:
    w.heading(["Projects", "Project Details", "Academic Projects", "Key Projects",
               "Projects Handled", "Project Experience"])
    for k in range(w.lay.choices([1, 2, 3, 4], [0.35, 0.35, 0.2, 0.1])[0]):
        _project(w, k)


def _completion(w: _Writer, d: _Degree) -> list[tuple[str, str | None]]:
    """The completion year as the resume writes it (annotated), or nothing."""
    if d.shown == "year":
        return [(str(d.year), "GRADUATION_YEAR")]
    if d.shown == "range":  # spaced: "2011-2015" would be one word
        sep = w.lay.choice([" - ", " \u2013 ", " to "])
        start = d.year - w.lay.choice([2, 3, 4])
        return [(f"{start}{sep}", None), (str(d.year), "GRADUATION_YEAR")]
    return []


def _education_table(w: _Writer) -> None:
    t = w.s.table
    w.add(t.join(w.lay.choice([["Qualification", "Institute", "Year", "Score"],
                               ["Degree", "College/University", "Year of Passing", "Marks"],
                               ["Course", "Institution", "Passing Year", "Percentage"]])) + "\n")
    for d in w.p.degrees:
        year = _completion(w, d) or [("-", None)]
        _pieces(w, [(d.degree, "DEGREE"), (t, None), (d.college, "COLLEGE"), (t, None), *year,
                    (t + w.lay.choice(DEGREE_SCORES) + "\n", None)])


def _education(w: _Writer) -> None:
    lay = w.lay
    w.heading(["Education", "Educational Qualification", "Academic Qualifications",
               "Academic Profile", "Qualifications", "Education Details", "Scholastic Profile"])
    if lay.random() < 0.3:
        _education_table(w)
        return
    fmt = lay.randrange(4)
    for d in w.p.degrees:
        college: list[tuple[str, str | None]] = [(d.college, "COLLEGE")]
        if d.city:
            college += [(", ", None), (d.city, "LOCATION")]
        year = _completion(w, d)
        score = f" with {lay.choice(DEGREE_SCORES)}" if lay.random() < 0.4 else ""
        if fmt == 0:
            parts = [(w.s.bullet, None), (d.degree, "DEGREE"), (", ", None), *college,
                     *([(", ", None), *year] if year else []), (score + "\n", None)]
        elif fmt == 1:
            parts = [(d.degree, "DEGREE"), ("\n", None), *college, ("\n", None),
                     *(year + [("\n", None)] if year else [])]
        elif fmt == 2:
            parts = [(d.degree, "DEGREE"), (" from ", None), *college,
                     *([(" in ", None), *year] if year else []), (score + ".\n", None)]
        else:
            parts = [*(year + [(" : ", None)] if year else []), (d.degree, "DEGREE"),
                     (" - ", None), *college, ("\n", None)]
        _pieces(w, parts)


def _list_section(w: _Writer, names: list[str], items: list[str], k: tuple[int, int]) -> None:
    lay = w.lay
    w.heading(names)
    chosen = lay.sample(items, min(len(items), lay.randint(*k)))
    if lay.random() < 0.4:
        w.add(", ".join(chosen) + ".\n")
    else:
        w.add("".join(f"{w.s.bullet}{item}\n" for item in chosen))


def _personal(w: _Writer) -> None:
    p, lay = w.p, w.lay
    w.heading(["Personal Details", "Personal Information", "Personal Profile", "Personal Data"])
    pad = lay.choice(["aligned", "\t: ", " : ", " - ", ": "])
    dob_y, dob_m, dob_d = NOW - 22 - int(p.years) - lay.randint(0, 4), lay.randint(1, 12), \
        lay.randint(1, 28)
    rows: list[tuple[str, list[tuple[str, str | None]]]] = []
    if lay.random() < 0.3:
        rows.append(("Name", [(f"{p.first} {p.last}", "NAME")]))
    rows.append(("Date of Birth", [(lay.choice([
        f"{dob_d:02d}-{dob_m:02d}-{dob_y}", f"{_ordinal(dob_d)} {FULL_MONTHS[dob_m - 1]} {dob_y}",
        f"{dob_y}/{dob_m:02d}/{dob_d:02d}", f"{FULL_MONTHS[dob_m - 1]} {dob_d}, {dob_y}",
        f"{dob_d:02d}.{dob_m:02d}.{dob_y}"]), None)]))
    for label, values in (("Marital Status", ["Single", "Married", "Unmarried"]),
                          ("Nationality", ["Indian", "Indian", "Kenyan", "Filipino", "British"])):
        if lay.random() < 0.7:
            rows.append((label, [(lay.choice(values), None)]))
    if lay.random() < 0.5:
        rows.append(("Languages Known", [(", ".join(lay.sample(SPOKEN, lay.randint(2, 4))),
                                          None)]))
    if p.yoe and p.yoe_where == "personal":
        rows.append(("Total Experience", [(p.yoe, "YEARS_OF_EXPERIENCE")]))
    if lay.random() < 0.3:
        rows.append(("Passport", [(lay.choice(["Available", "Yes", "Not available"]), None)]))
    for label, value in rows:
        sep = ": ".rjust(max(2, 20 - len(label))) if pad == "aligned" else pad
        _pieces(w, [(label + sep, None), *value, ("\n", None)])


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _declaration(w: _Writer) -> None:
    p, lay = w.p, w.lay
    if lay.random() < 0.7:
        w.heading(["Declaration"])
    w.add(lay.choice(DECLARATIONS) + "\n\n")
    if lay.random() < 0.7:
        w.add(lay.choice(["Place: ", "Place : ", "Place:\t"]))
        w.entity(lay.choice([p.city, p.city, lay.choice(MORE_CITIES)]), "LOCATION")
        w.add("\n")
    if lay.random() < 0.5:
        day = f"{lay.randint(1, 28)}/0{lay.randint(1, 9)}/{NOW}"
        w.add(f"Date: {lay.choice(['', '__________', day])}\n")
    if lay.random() < 0.75:
        name = f"{p.first} {p.last}"
        w.add(lay.choice(["", "(", "Signature\n", "Yours sincerely,\n"]))
        w.entity(name.upper() if lay.random() < 0.4 else name, "NAME")
        w.add(")\n" if w.b.parts[-2] == "(" else "\n")


def _references(w: _Writer) -> None:
    w.heading(["References", "Reference"])
    w.add(w.lay.choice(REFERENCES) + "\n")


def _hobbies(w: _Writer) -> None:
    _list_section(w, ["Hobbies", "Hobbies & Interests", "Interests", "Extra-Curricular "
                      "Activities"], HOBBIES, (2, 6))


def _certifications(w: _Writer) -> None:
    _list_section(w, ["Certifications", "Certificates", "Trainings & Certifications"],
                  CERTIFICATES, (1, 3))


def _achievements(w: _Writer) -> None:
    _list_section(w, ["Achievements", "Awards", "Accomplishments", "Co-curricular Activities"],
                  ACHIEVEMENTS, (1, 4))


def _strengths(w: _Writer) -> None:
    w.heading(["Strengths", "Personal Strengths", "Key Strengths"])
    w.slot("strengths", 0.4, lambda: w.add(f"{w.s.bullet}{w.pr.choice(SUMMARY_SENTENCES)}\n"))


def _languages(w: _Writer) -> None:
    _list_section(w, ["Languages", "Languages Known", "Language Proficiency"], SPOKEN, (2, 4))


def _stub_body(w: _Writer) -> None:
    """A stub: the header and a few lines (a parse that kept little, a one-line profile)."""
    p, lay = w.p, w.lay
    if p.skills and lay.random() < 0.8:
        w.add(lay.choice(["Skills: ", "Key skills - ", "SKILLS\n", "Expertise: "]))
        for i, skill in enumerate(p.skills):
            w.add(", " if i else "")
            w.entity(skill, "SKILL")
        w.add("\n")
    for job in p.jobs:
        _job_header(w, job)
    for d in p.degrees:
        _pieces(w, [(d.degree, "DEGREE"), (lay.choice([", ", " - ", " from "]), None),
                    (d.college, "COLLEGE"), ("\n", None)])
    if lay.random() < 0.7:
        w.slot("summary", 1.0, lambda: _summary_sentence(w), least=0)
        w.add("\n")
    if p.jobs:
        w.slot("job0", 1.0, lambda: _duty_bullet(w), least=0)


_EXTRAS: list[tuple[Callable[[_Writer], None], float]] = [
    (_certifications, 0.2), (_achievements, 0.25), (_strengths, 0.2), (_personal, 0.4),
    (_languages, 0.2), (_hobbies, 0.35), (_references, 0.2), (_declaration, 0.35)]


def _layout(w: _Writer) -> None:
    p, lay = w.p, w.lay
    _header(w)
    if p.stub:
        _stub_body(w)
        return
    sections: list[Callable[[_Writer], None]] = []
    if lay.random() < 0.8:
        sections.append(_summary)
    skills, early = lay.random() < 0.82, lay.random() < 0.5
    if skills and early:
        sections.append(_skills)
    body: list[Callable[[_Writer], None]] = [_experience] if p.jobs else []
    if lay.random() < 0.45 or not p.jobs:
        body.append(_projects)
    sections += [_education, *body] if p.years < 2 else [*body, _education]
    if skills and not early:
        sections.append(_skills)
    sections += [fn for fn, chance in _EXTRAS if lay.random() < chance]
    for section in sections:
        section(w)
        if lay.random() < 0.05:
            w.add(f"\n{lay.choice(PAGE_NOISE)}\n")


def resume(rng: random.Random) -> dict:
    """One realistic resume drawn from ``rng`` (see the module docstring)."""
    target = _target_words(rng)
    profile, style = _profile(rng, target), _style(rng)
    lay_seed, prose_seed = rng.getrandbits(64), rng.getrandbits(64)

    def write(budgets: dict[str, int] | None) -> _Writer:
        w = _Writer(profile, style, random.Random(lay_seed), random.Random(prose_seed), budgets)
        _layout(w)
        return w

    w = write(None)
    extra = target - len(word_spans(w.b.text()))
    weight = sum(w.slot_weights.values())
    if extra > 0 and weight:
        w = write({k: w.slot_words[k] + round(extra * v / weight)
                   for k, v in w.slot_weights.items()})
    return {"text": w.b.text().rstrip() + "\n", "annotations": w.b.spans}

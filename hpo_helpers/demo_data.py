"""A deterministic generator of synthetic resumes with character-span annotations.

The committed ``dataset/`` folder is made by ``python -m hpo_helpers make-demo-data``; the same
seed always gives the same bytes. Resumes vary in section order, headings, bullet styles, date
formats and contact lines, and hold all ten entity types.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

__all__ = ["generate", "write_dataset"]

FIRST = ["Aarav", "Priya", "Rahul", "Ananya", "Vikram", "Sneha", "Arjun", "Kavya", "Rohan",
         "Meera", "John", "Emily", "Michael", "Sarah", "David", "Laura", "Carlos", "Sofia",
         "Wei", "Mei", "Ahmed", "Fatima", "Olga", "Ivan", "Kenji", "Yuki", "Liam", "Chloe",
         "Noah", "Amara", "Tunde", "Ines", "Mateo", "Lucia", "Hannah", "Omar", "Zara", "Ravi"]
LAST = ["Sharma", "Patel", "Iyer", "Reddy", "Nair", "Gupta", "Smith", "Johnson", "Garcia",
        "Martinez", "Chen", "Wang", "Khan", "Ali", "Petrova", "Ivanov", "Tanaka", "Sato",
        "Brown", "Wilson", "Okafor", "Adeyemi", "Silva", "Costa", "Mueller", "Schmidt", "Rossi",
        "Dubois", "Kowalski", "Novak", "Hughes", "Bose", "Menon", "Fernandes"]
CITIES = ["Bangalore", "Pune", "Hyderabad", "Chennai", "Mumbai", "New Delhi", "Noida",
          "Gurgaon", "Kolkata", "London", "Berlin", "San Francisco", "New York", "Toronto",
          "Singapore", "Dublin", "Austin", "Seattle", "Lagos", "Sao Paulo", "Madrid", "Warsaw"]
COMPANIES = ["Infosys", "Tata Consultancy Services", "Wipro", "Accenture", "IBM", "Oracle",
             "Microsoft", "Amazon Web Services", "Google", "Capgemini", "Cognizant", "Deloitte",
             "HCL Technologies", "Tech Mahindra", "SAP Labs", "Flipkart", "Zoho Corporation",
             "Mindtree", "Siemens", "Ericsson", "Nokia Networks", "Salesforce", "Adobe Systems",
             "Ola Cabs", "Swiggy", "Paytm", "Northwind Analytics", "Bluepeak Software"]
TITLES = ["Software Engineer", "Senior Software Engineer", "Data Scientist", "Data Analyst",
          "Machine Learning Engineer", "Project Manager", "Business Analyst", "DevOps Engineer",
          "QA Engineer", "Technical Lead", "Systems Administrator", "Product Manager",
          "Full Stack Developer", "Cloud Architect", "Network Engineer", "Consultant",
          "Associate Consultant", "Team Lead", "Database Administrator", "Frontend Developer"]
SKILLS = ["Python", "Java", "C++", "SQL", "JavaScript", "React", "Angular", "Node.js",
          "Machine Learning", "Deep Learning", "TensorFlow", "PyTorch", "AWS", "Azure", "Docker",
          "Kubernetes", "Linux", "Git", "Spark", "Hadoop", "Tableau", "Power BI", "Excel",
          "Selenium", "Jenkins", "Terraform", "MongoDB", "PostgreSQL", "REST APIs", "Scala",
          "Go", "Pandas", "NLP", "Computer Vision", "Agile", "Scrum", "SAP ABAP", "Salesforce CRM",
          "Microsoft Office", "Data Visualization", "Statistics", "HTML", "CSS", "Spring Boot"]
DEGREES = ["B.Tech in Computer Science", "Bachelor of Engineering", "B.E. in Electronics",
           "M.Tech", "MCA", "BCA", "B.Sc. Computer Science", "M.Sc. Data Science", "MBA",
           "Master of Science in Computer Science", "Bachelor of Science", "PhD in Physics",
           "B.Com", "Diploma in Mechanical Engineering", "Master of Computer Applications"]
COLLEGES = ["Indian Institute of Technology Bombay", "National Institute of Technology Trichy",
            "Anna University", "Visvesvaraya Technological University", "Pune University",
            "Delhi University", "BITS Pilani", "Jadavpur University", "Osmania University",
            "University of Toronto", "Technical University of Munich", "University of Lagos",
            "Stanford University", "University of Texas at Austin", "Trinity College Dublin",
            "VIT University", "Manipal Institute of Technology", "Amity University"]
DOMAINS = ["gmail.com", "yahoo.com", "outlook.com", "hotmail.com", "protonmail.com",
           "mail.com", "example.org"]
VERBS = ["Developed", "Designed", "Led", "Built", "Maintained", "Implemented", "Automated",
         "Migrated", "Optimised", "Delivered", "Managed", "Improved"]
OBJECTS = ["a reporting dashboard", "the billing microservices", "ETL pipelines",
           "a customer churn model", "CI/CD workflows", "the mobile checkout flow",
           "an internal search engine", "data quality checks", "the payments gateway",
           "a recommendation system", "test automation suites", "cloud infrastructure"]
OUTCOMES = ["reducing costs by 20%", "serving 2 million users", "cutting latency in half",
            "improving accuracy to 93%", "with a team of 6", "ahead of schedule",
            "for 40 enterprise clients", "saving 15 hours a week"]
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


class _Builder:
    """Accumulates text and exclusive-end spans."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.length = 0
        self.spans: list[list] = []

    def add(self, text: str, label: str | None = None) -> None:
        if label:
            self.spans.append([self.length, self.length + len(text), label])
        self.parts.append(text)
        self.length += len(text)

    def text(self) -> str:
        return "".join(self.parts)


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


def _summary(b: _Builder, rng: random.Random, p: _Person) -> None:
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


def _experience(b: _Builder, rng: random.Random, p: _Person) -> None:
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


def _education(b: _Builder, rng: random.Random, p: _Person) -> None:
    b.add(rng.choice(["EDUCATION\n", "Education\n", "Academic Qualifications:\n",
                      "Qualifications\n"]))
    b.add(p.bullet)
    b.add(rng.choice(DEGREES), "DEGREE")
    b.add(rng.choice([", ", " from ", " - "]))
    b.add(rng.choice(COLLEGES), "COLLEGE")
    b.add(rng.choice([", ", " (", " | Graduated "]))
    b.add(str(p.grad_year), "GRADUATION_YEAR")
    b.add(")\n\n" if b.parts[-2] == " (" else "\n\n")


def _skills(b: _Builder, rng: random.Random, p: _Person) -> None:
    b.add(rng.choice(["SKILLS\n", "Technical Skills:\n", "Key Skills\n", "Skill Set\n"]))
    sep = rng.choice([", ", " | ", "\n" + p.bullet])
    if sep.startswith("\n"):
        b.add(p.bullet)
    for i, skill in enumerate(p.skills):
        if i:
            b.add(sep)
        b.add(skill, "SKILL")
    b.add("\n\n")


def _resume(rng: random.Random) -> dict:
    b = _Builder()
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


def generate(n: int, seed: int = 7) -> list[dict]:
    """``n`` synthetic resumes; the same ``(n, seed)`` gives the same list."""
    rng = random.Random(seed)
    return [_resume(rng) for _ in range(n)]


def write_dataset(out_dir: Path | str, *, n_train: int = 240, n_validation: int = 60,
                  n_test: int = 60, seed: int = 7) -> dict[str, Path]:
    """Write ``train.json``, ``validation.json`` and ``test.json`` under ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    docs = generate(n_train + n_validation + n_test, seed)
    chunks = {"train": docs[:n_train], "validation": docs[n_train:n_train + n_validation],
              "test": docs[n_train + n_validation:]}
    written = {}
    for split, items in chunks.items():
        path = out / f"{split}.json"
        path.write_text(json.dumps(items, ensure_ascii=False, indent=0) + "\n", encoding="utf-8")
        written[split] = path
    return written

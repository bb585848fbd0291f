"""What the demo generators write with: a text builder that records spans, and word lists.

The first lists (``FIRST`` to ``MONTHS``) are the compact style's and must not change: the
compact style's bytes, and the fingerprints of studies made on them, depend on them. The
realistic style draws from them and from the longer lists below them. Every list is made up
for this project or common knowledge (no resume was copied), so the demo data is licence-free.

The entity lists are kept apart from the prose lists on purpose: the realistic style annotates
every mention of an entity, so prose must never contain an entity string by accident
(``tests/test_demo.py`` checks that no unannotated copy of an annotated string is left).
"""

from __future__ import annotations

__all__ = ["Builder"]


class Builder:
    """Accumulates text and exclusive-end ``[start, end, label]`` spans."""

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


# ---- the compact style's lists (frozen) --------------------------------------------------------

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

# ---- the realistic style's entity lists --------------------------------------------------------

MORE_FIRST = FIRST + [
    "Aditya", "Pooja", "Karthik", "Divya", "Suresh", "Lakshmi", "Manoj", "Swati", "Nikhil",
    "Shreya", "Harish", "Deepika", "Abhishek", "Neha", "Sandeep", "Anjali", "Venkatesh",
    "Ritu", "Prakash", "Nandini", "Gaurav", "Aishwarya", "Siddharth", "Bhavana", "Mohammed",
    "Ayesha", "Joseph", "Maria", "Daniel", "Grace", "Samuel", "Esther", "Thomas", "Anna",
    "Lukas", "Elena", "Pedro", "Camila", "Jin", "Hyun", "Tomasz", "Agnieszka", "Kwame",
    "Chiamaka", "Rafael", "Isabel", "Arash", "Leila", "Dmitri", "Katarina"]
MORE_LAST = LAST + [
    "Kumar", "Singh", "Rao", "Verma", "Joshi", "Kulkarni", "Deshpande", "Pillai", "Chatterjee",
    "Banerjee", "Mukherjee", "Agarwal", "Mehta", "Shah", "Desai", "Naidu", "Krishnan",
    "Subramanian", "Varghese", "Thomas", "Mathew", "Hegde", "Shetty", "Saxena", "Mishra",
    "Kapoor", "Malhotra", "Chowdhury", "Das", "Ghosh", "Lopez", "Kim", "Park", "Nguyen",
    "Okonkwo", "Mensah", "Haddad", "Rahman", "Hoffmann", "Lindqvist", "Jansen", "Moreau"]
MORE_CITIES = CITIES + [
    "Bengaluru", "Gurugram", "Ahmedabad", "Jaipur", "Chandigarh", "Coimbatore", "Kochi",
    "Trivandrum", "Indore", "Bhubaneswar", "Mysore", "Nagpur", "Vadodara", "Lucknow",
    "Visakhapatnam", "Mangalore", "Nashik", "Dubai", "Amsterdam", "Munich", "Melbourne",
    "Sydney", "Chicago", "Boston", "Atlanta", "Manchester", "Nairobi", "Accra", "Manila",
    "Kuala Lumpur", "Dallas", "Raleigh", "Edinburgh", "Lisbon", "Prague", "Auckland"]
MORE_COMPANIES = [c for c in COMPANIES if c not in ("Oracle", "Salesforce")] + [
    "Oracle India", "Salesforce India", "Larsen & Toubro Infotech", "Mphasis",
    "Hexaware Technologies", "Persistent Systems", "KPMG", "Ernst & Young", "Genpact",
    "Barclays", "HSBC", "ICICI Bank", "HDFC Bank", "Reliance Industries", "Bajaj Finserv",
    "Mu Sigma", "Fractal Analytics", "Thoughtworks", "Cerner Healthcare", "Philips Innovation",
    "Bosch Global Software", "Honeywell Technology Solutions", "Goldman Sachs", "JP Morgan",
    "Standard Chartered", "Airtel", "Vodafone Idea", "Crestline Logistics", "Silverleaf Retail",
    "Orbit Fintech", "Greenfield Foods", "Kestrel Aerospace", "Lumen Health Systems",
    "Brightwave Media", "Harbourview Insurance", "Maple Ridge Consulting", "Quantus Labs",
    "Redstone Engineering", "Tidewater Shipping", "Suncrest Pharma", "Vertex Learning"]
COMPANY_SUFFIXES = ["", "", "", "", " Ltd.", " Limited", " Pvt. Ltd.", " Inc.", " LLP"]
MORE_TITLES = TITLES + [
    "Senior Analyst", "Trainee Engineer", "Intern", "Assistant Manager", "Senior Manager",
    "Accountant", "HR Executive", "Sales Executive", "Customer Support Executive",
    "Operations Manager", "Lecturer", "Graphic Designer", "Mechanical Engineer",
    "Civil Engineer", "Research Assistant", "Data Engineer", "Solution Architect",
    "Program Manager", "Delivery Manager", "Technical Architect", "SAP Consultant",
    "Android Developer", "Java Developer", "Python Developer", "Test Engineer",
    "Support Engineer", "Process Associate", "Senior Process Executive", "Finance Analyst",
    "Marketing Executive", "Branch Manager", "Relationship Manager", "Content Writer",
    "UI Designer", "Site Reliability Engineer", "Application Developer", "ETL Developer"]
MORE_SKILLS = [s for s in SKILLS if s != "Go"] + [
    "Golang", "C#", "MySQL", "Oracle Database", "PL/SQL", "Django", "Flask", "Hibernate",
    "Kafka", "Redis", "Ansible", "JIRA", "Confluence", "SharePoint", "Informatica", "SSIS",
    "SSRS", "Shell Scripting", "Bash", "Perl", "PHP", "Ruby on Rails", "Kotlin", "Swift",
    "Android", "Unix", "Windows Server", "TCP/IP", "Cisco Routers", "VMware", "SAS", "SPSS",
    "R Programming", "MATLAB", "AutoCAD", "SolidWorks", "Financial Modelling", "Tally ERP",
    "SAP FICO", "Payroll Administration", "Digital Marketing", "SEO", "Adobe Photoshop", "Figma",
    "Project Management", "Risk Management", "Stakeholder Management", "Requirement Gathering",
    "Manual Testing", "Automation Testing", "LoadRunner", "Postman", "GraphQL", "Microservices",
    "Elasticsearch", "Snowflake", "Airflow", "Databricks", "BigQuery", "GCP", "Jupyter",
    "Scikit-learn", "Keras", "OpenCV", "Matplotlib", "NumPy", "Vue.js", "TypeScript",
    "Bootstrap", "jQuery", "Maven", "Gradle", "GitHub Actions", "Splunk", "ServiceNow",
    "Active Directory", "Data Warehousing", "Data Modelling", "ETL", "Hive", "Pig", "Sqoop"]
# Skill groups of a flattened "skills table" (the group names are not entities).
SKILL_GROUPS = ["Languages", "Programming Languages", "Databases", "Tools", "Frameworks",
                "Cloud", "Operating Systems", "Web Technologies", "Others", "Big Data",
                "Testing", "Reporting", "Version Control", "Methodologies", "Packages"]
MORE_DEGREES = DEGREES + [
    "Bachelor of Technology", "B.E.", "B.Tech", "B.Sc", "M.Sc", "MBA (Finance)", "PGDM",
    "Bachelor of Commerce", "M.Com", "Diploma in Computer Engineering",
    "Master of Engineering", "BBA", "B.A. Economics", "M.A. English",
    "Bachelor of Computer Applications", "M.Tech in Software Engineering",
    "B.Tech (Information Technology)", "Master of Business Administration",
    "Bachelor of Science in Mathematics", "B.E. Mechanical", "MS in Data Analytics"]
MORE_COLLEGES = COLLEGES + [
    "Mumbai University", "Bangalore University", "Madras Christian College",
    "SRM Institute of Science and Technology", "Amrita Vishwa Vidyapeetham",
    "Christ University", "Symbiosis Institute of Business Management",
    "Indian Institute of Management Ahmedabad", "Lovely Professional University",
    "Kalinga Institute of Industrial Technology", "PES University", "RV College of Engineering",
    "College of Engineering Pune", "Nirma University", "Thapar Institute of Engineering",
    "Savitribai Phule Pune University", "University of Mumbai", "Andhra University",
    "Kerala University", "Jawaharlal Nehru Technological University", "University of Leeds",
    "University of Nairobi", "Arizona State University", "University of Melbourne",
    "National University of Singapore", "Sathyabama University", "Shivaji University"]
MORE_DOMAINS = DOMAINS + ["yahoo.co.in", "rediffmail.com", "gmail.com", "gmail.com",
                          "icloud.com", "live.com", "outlook.in", "zoho.com"]

# ---- the realistic style's prose (no entity strings in here) -----------------------------------

DUTY_VERBS = [
    "Designed", "Developed", "Implemented", "Maintained", "Coordinated", "Reviewed", "Prepared",
    "Handled", "Supported", "Analysed", "Analyzed", "Monitored", "Documented", "Tested",
    "Streamlined", "Automated", "Migrated", "Configured", "Deployed", "Mentored", "Trained",
    "Negotiated", "Resolved", "Planned", "Executed", "Created", "Owned", "Drove", "Conducted",
    "Participated in", "Collaborated on", "Contributed to", "Standardised", "Consolidated",
    "Redesigned", "Audited", "Facilitated", "Estimated", "Scheduled", "Presented", "Tracked",
    "Improved", "Rolled out", "Organised", "Investigated", "Validated", "Onboarded"]
DUTY_OBJECTS = [
    "the monthly sales reports", "vendor contracts", "customer escalations",
    "the onboarding process for new joiners", "unit and integration test plans",
    "release notes for each sprint", "the month-end closing process",
    "data quality rules for the finance team", "the inventory reconciliation workflow",
    "service level agreements with clients", "the internal knowledge base",
    "nightly batch jobs", "the claims processing module", "user acceptance testing",
    "requirement documents", "weekly status reports", "the production support rota",
    "root cause analysis of recurring incidents", "the migration of legacy reports",
    "stakeholder workshops", "the customer feedback survey", "dashboards for senior management",
    "the procurement approval flow", "access reviews for shared folders",
    "the disaster recovery drill", "code reviews for junior developers",
    "the training calendar", "technical design documents", "the change management process",
    "invoices and payment follow-ups", "the order fulfilment pipeline", "daily stand-up meetings",
    "the loan origination screens", "regression test cycles", "capacity planning sheets",
    "the quarterly budget forecast", "field visits to distributor sites",
    "the ticket triage process", "a library of reusable components", "the audit checklist",
    "data extracts for the compliance team", "the hiring pipeline for the unit",
    "price comparison sheets", "the backlog with the product owner", "server patching windows",
    "the customer master data", "handover documents for the support team",
    "a proof of concept for the new portal", "the attendance and leave records",
    "the warehouse slotting plan", "marketing campaign reports", "the employee survey results"]
DUTY_CONTEXTS = [
    "to improve turnaround time", "for the retail banking division",
    "across three regional offices", "in close coordination with the business team",
    "as part of a cross-functional team", "for a leading insurance client",
    "under tight deadlines", "in line with audit requirements",
    "for both domestic and international clients", "during the peak season",
    "for the healthcare vertical", "with the offshore and onsite teams",
    "for more than 200 internal users", "as the single point of contact",
    "for a large telecom client", "within the agreed budget", "for the logistics business unit",
    "with minimal supervision", "following the company's quality standards",
    "for the new product line", "with the help of two junior colleagues"]
DUTY_OUTCOMES = [
    "which reduced manual effort by 30%", "resulting in fewer production defects",
    "which cut the average resolution time from 4 days to 1",
    "and received appreciation from the client", "improving customer satisfaction scores",
    "saving about 10 hours per week", "bringing the error rate below 2%",
    "which helped close the audit without observations", "leading to faster approvals",
    "and reduced the backlog by half", "which improved on-time delivery to 98%",
    "with zero downtime during the cut-over", "increasing monthly revenue by 12%",
    "which is still used by the team", "and brought the response time under 200 ms"]
SUMMARY_SENTENCES = [
    "Seeking a challenging position in a reputed organisation where I can use my knowledge "
    "and grow along with the company.",
    "Hard-working and self-motivated professional with a strong sense of ownership.",
    "Good communication and interpersonal skills, and comfortable presenting to clients.",
    "Quick learner who adapts well to new tools, domains and environments.",
    "Able to work independently as well as part of a team.",
    "Strong analytical and problem solving abilities with attention to detail.",
    "Experienced in working with clients across different time zones.",
    "Passionate about writing clean, well documented and maintainable work.",
    "Believes in continuous learning and sharing knowledge with the team.",
    "Comfortable handling multiple priorities and meeting strict deadlines.",
    "Looking for an opportunity to contribute to the growth of the organisation while "
    "developing my own career.",
    "Known for a calm approach under pressure and a positive attitude.",
    "Good understanding of the full delivery life cycle, from requirements to support.",
    "Proven ability to build good working relationships with stakeholders at all levels.",
    "Enjoys mentoring new team members and improving the way the team works.",
    "Detail oriented, organised and dependable.",
    "Interested in roles that combine hands-on work with customer interaction.",
    "Willing to relocate and open to travel for work.",
    "Committed to quality and to delivering on time.",
    "Takes initiative and follows tasks through to completion."]
PROJECT_ADJ = ["Online", "Smart", "Automated", "Integrated", "Centralised", "Real-time",
               "Digital", "Unified", "Mobile", "Cloud-based", "Self-service", "Enterprise"]
PROJECT_DOMAIN = ["Inventory", "Payroll", "Loan", "Hospital", "Hotel", "Library", "Student",
                  "Fleet", "Claims", "Billing", "Attendance", "Recruitment", "Warranty",
                  "Insurance", "Retail", "Supply Chain", "Event", "Expense", "Helpdesk"]
PROJECT_KIND = ["Management System", "Tracking Portal", "Analytics Dashboard",
                "Processing Engine", "Booking Application", "Reporting Tool", "Workflow",
                "Data Platform", "Monitoring System", "Customer Portal"]
PROJECT_SENTENCES = [
    "The application allows users to raise, track and close requests from a single screen.",
    "The system replaced a set of spreadsheets that were maintained by hand.",
    "The goal of the project was to give the business a single view of its data.",
    "The portal is used by branch staff to capture and approve applications.",
    "The solution pulls data from several source systems every night and publishes reports "
    "in the morning.",
    "The product supports role based access, audit trails and email notifications.",
    "Users can search, filter and export records and see the history of every change.",
    "The module calculates charges according to the rules agreed with each customer.",
    "The tool sends reminders to approvers and escalates requests that are pending too long.",
    "The platform was rolled out in phases to more than twenty locations.",
    "The project was delivered in sprints of two weeks with a demo at the end of each sprint.",
    "The client wanted to reduce the time taken to process a request from days to hours.",
    "The existing process had frequent errors because data was entered twice.",
    "The new design made the screens easier to use on small devices.",
    "All changes were tested in a staging environment before going to production.",
    "Reports that took a full day to prepare are now available within minutes.",
    "The first release covered the most common cases and later releases added the rest.",
    "Feedback from the pilot users was collected every week and fed into the next release.",
    "The data model was kept simple so that new fields could be added without downtime.",
    "Every screen was reviewed with the end users before development started.",
    "A detailed user guide and short training videos were prepared for the rollout.",
    "The old and new systems were run in parallel for one month before the switch.",
    "Performance was tested with ten times the expected load before the launch.",
    "The project followed the security guidelines of the client for personal data.",
    "Errors are logged centrally and the support team is alerted automatically."]
HOBBIES = ["Reading books", "Playing chess", "Travelling", "Cricket", "Photography",
           "Listening to music", "Cooking", "Badminton", "Trekking", "Painting", "Yoga",
           "Blogging", "Playing the guitar", "Volunteering", "Watching documentaries",
           "Cycling", "Table tennis", "Gardening", "Swimming", "Sketching", "Football",
           "Solving puzzles", "Running", "Learning new languages", "Board games"]
SPOKEN = ["English", "Hindi", "Tamil", "Telugu", "Kannada", "Malayalam", "Marathi", "Bengali",
          "Gujarati", "French", "German", "Spanish", "Arabic", "Japanese", "Punjabi", "Urdu"]
CERTIFICATES = [
    "ITIL Foundation Certificate", "PMP Certification", "Six Sigma Green Belt",
    "Certified ScrumMaster", "NPTEL course on Data Structures and Algorithms",
    "First Aid and CPR course", "Certificate course in Business Communication",
    "Advanced Diploma in Financial Accounting", "Lean Management workshop",
    "Online course on Negotiation Skills", "Certificate in Digital Literacy",
    "Workshop on Design Thinking", "Course on Effective Public Speaking"]
ACHIEVEMENTS = [
    "Won the best employee award for the year.",
    "Received the Star Performer recognition twice.",
    "Secured first place in the inter-college coding contest.",
    "Volunteered with a local NGO teaching children on weekends.",
    "Organised the annual technical festival of the college.",
    "Represented the college in the state level football tournament.",
    "Awarded a merit scholarship for academic performance.",
    "Published a paper in a national conference.",
    "Was the class representative for two terms.",
    "Completed a 21 km half marathon.",
    "Received a spot award for handling a critical release.",
    "Led the team that won the internal hackathon."]
REFERENCES = ["Available on request.", "Will be furnished upon request.",
              "References can be provided if required.", "Available upon request"]
DECLARATIONS = [
    "I hereby declare that the information furnished above is true to the best of my "
    "knowledge and belief.",
    "I hereby declare that all the details given above are correct and complete.",
    "I confirm that the above information is true and I will be responsible for any "
    "discrepancy."]
PAGE_NOISE = ["Page 1 of 2", "Page 2", "-- 1 of 3 --", "Curriculum Vitae", "RESUME",
              "Confidential", "(continued)", "\u000c"]
BULLETS = ["- ", "* ", "\u2022 ", "\u2022\t", "\u25aa ", "\u27a2 ", "\u2713 ", "o ", "> ",
           "\u25cf ", "\uf0b7 ", "\u2192 ", "\u00bb ", "\u25e6 ", ""]
DEGREE_SCORES = ["CGPA 8.2", "78%", "First Class", "65.4 %", "GPA 3.6/4.0", "Distinction",
                 "7.9 CGPA", "Second Class", "71 percent", "CGPA: 9.1/10"]


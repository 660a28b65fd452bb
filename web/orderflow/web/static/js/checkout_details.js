// The checkout's delivery details: name, address, phone.
//
// The rules repeat the server's (orderflow/web/customer_body.py) so that most mistakes are
// pointed out before a request; the server's 422 is still the one that counts, and its
// per-field errors ("customer.phone": ...) are shown next to the same fields. The values
// live only in the form: never stored in the browser, never written to the console.

const FIELDS = [
  { key: "name", label: "Name", min: 1, max: 100 },
  { key: "address", label: "Address", min: 5, max: 300 },
  { key: "phone", label: "Phone" },
];

const PHONE_RULE =
  "must be an international number (+ then 7 to 15 digits) or a national one (6 to 15 digits); " +
  "spaces, dashes, dots and parentheses may separate the digits";
const PHONE_MAX_LENGTH = 32;
// Control characters, Unicode line/paragraph separators and bidirectional overrides.
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/u;

function checkText(value, min, max) {
  if (CONTROL.test(value)) return "must not contain control characters (line breaks, tabs, bidirectional overrides)";
  const length = Array.from(value).length; // code points, as the server counts
  if (length < min || length > max) return `must be ${min} to ${max} characters (surrounding spaces do not count)`;
  return "";
}

function checkPhone(value) {
  if (CONTROL.test(value)) return "must not contain control characters (line breaks, tabs)";
  if (value.length > PHONE_MAX_LENGTH) return `must be at most ${PHONE_MAX_LENGTH} characters`;
  const international = value.startsWith("+");
  const rest = international ? value.slice(1) : value;
  const digits = (rest.match(/[0-9]/g) || []).length;
  const [low, high] = international ? [7, 15] : [6, 15];
  if (/[^0-9 ().-]/.test(rest) || digits < low || digits > high) return PHONE_RULE;
  return "";
}

export class CheckoutDetails {
  // form: the <form> holding inputs named name/address/phone, each followed by an element
  // with id "<input id>-error"; onSubmit: what Enter in a field does (place the order).
  constructor(form, onSubmit) {
    this.form = form;
    this.inputs = Object.fromEntries(FIELDS.map((f) => [f.key, form.elements.namedItem(f.key)]));
    // Enter in a field places the order (a form of several fields and no submit button
    // has no implicit submission of its own).
    form.addEventListener("submit", (event) => event.preventDefault());
    form.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.isComposing && event.target instanceof HTMLInputElement) {
        event.preventDefault();
        onSubmit();
      }
    });
    for (const field of FIELDS) {
      // A corrected field loses its error as soon as it satisfies the rules.
      this.inputs[field.key].addEventListener("input", () => {
        if (this.inputs[field.key].getAttribute("aria-invalid") === "true" && !this.problem(field)) {
          this.setError(field.key, "");
        }
      });
    }
  }

  problem(field) {
    const value = this.inputs[field.key].value.trim();
    if (field.key === "phone") return value ? checkPhone(value) : "is required";
    if (!value) return "is required";
    return checkText(value, field.min, field.max);
  }

  setError(key, message) {
    const input = this.inputs[key];
    const el = document.getElementById(`${input.id}-error`);
    const field = FIELDS.find((f) => f.key === key);
    el.textContent = message ? `${field.label} ${message}.` : "";
    el.hidden = !message;
    if (message) input.setAttribute("aria-invalid", "true");
    else input.removeAttribute("aria-invalid");
  }

  clearErrors() {
    for (const field of FIELDS) this.setError(field.key, "");
  }

  // The customer for the request, trimmed; or null after marking every bad field and
  // moving focus to the first.
  read() {
    let first = null;
    for (const field of FIELDS) {
      const message = this.problem(field);
      this.setError(field.key, message);
      if (message && !first) first = this.inputs[field.key];
    }
    if (first) {
      first.focus();
      return null;
    }
    return Object.fromEntries(FIELDS.map((f) => [f.key, this.inputs[f.key].value.trim()]));
  }

  // Put a 422's errors about "customer.<field>" next to their fields; true if there were any.
  showServerErrors(problem) {
    const errors = (problem && Array.isArray(problem.errors) ? problem.errors : []).filter(
      (e) => typeof e.field === "string" && e.field.startsWith("customer"),
    );
    let first = null;
    for (const error of errors) {
      const key = error.field.split(".")[1];
      if (!(key in this.inputs)) continue;
      this.setError(key, error.message);
      first = first || this.inputs[key];
    }
    first?.focus();
    return first !== null;
  }
}

-- R-INV-4: producers' legal identity for invoices. The names and address (a sole trader's are
-- personal data) live here; the event BillingIdentitySet keeps the SIREN, the VAT number and
-- the VAT regime.
CREATE TABLE billing_identities
(
    producer_id  uuid PRIMARY KEY,
    legal_name   text        NOT NULL,
    siren        text        NOT NULL,
    vat_number   text,
    vat_franchise boolean    NOT NULL,
    address_line text        NOT NULL,
    postcode     text        NOT NULL,
    city         text        NOT NULL,
    country      text        NOT NULL,
    changed_at   timestamptz NOT NULL
);

-- R-INV-1, R-INV-2, R-INV-5: every issued invoice and credit note as written, beside the
-- InvoiceIssued event of its series (which keeps its number, totals and this document's
-- SHA-256). Written in the transaction that issues it; never changed or deleted.
CREATE TABLE invoice_documents
(
    invoice_id  uuid PRIMARY KEY,
    series      text        NOT NULL,
    number      text        NOT NULL,
    kind        text        NOT NULL CHECK (kind IN ('invoice', 'credit_note')),
    issuer      uuid        NOT NULL,
    customer    uuid,
    source      text        NOT NULL,
    corrects    uuid REFERENCES invoice_documents (invoice_id),
    issue_date  date        NOT NULL,
    excl_vat    numeric     NOT NULL,
    vat         numeric     NOT NULL,
    incl_vat    numeric     NOT NULL,
    document    jsonb       NOT NULL,
    cii_xml     text        NOT NULL,
    digest      text        NOT NULL,
    issued_at   timestamptz NOT NULL,
    UNIQUE (series, number)
);
CREATE INDEX invoice_documents_by_issuer ON invoice_documents (issuer, issue_date);
CREATE INDEX invoice_documents_by_customer ON invoice_documents (customer, issue_date);

CREATE FUNCTION invoice_documents_never_change() RETURNS trigger LANGUAGE plpgsql AS
$$
BEGIN
    RAISE EXCEPTION 'an issued invoice never changes (R-INV-2): issue a credit note';
END
$$;
CREATE TRIGGER invoice_documents_immutable
    BEFORE UPDATE OR DELETE ON invoice_documents
    FOR EACH ROW EXECUTE FUNCTION invoice_documents_never_change();

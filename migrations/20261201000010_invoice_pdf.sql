-- R-INV-5: the Factur-X PDF/A-3 of each document (its CII XML embedded as factur-x.xml),
-- written with it at issue.
ALTER TABLE invoice_documents ADD COLUMN pdf bytea;

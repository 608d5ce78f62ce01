-- R-SAL-7: an administrator invites a person to a members-only market by e-mail address. The
-- address is personal data, kept outside the events like `people` (ADR 0003); the admission
-- itself is an event (MemberApproved, by the inviting administrator) once the invited person,
-- signed in with that address registered, accepts.
CREATE TABLE market_invitations
(
    market_id   uuid        NOT NULL,
    -- Lower case, trimmed; NULL once accepted or erased.
    email       text,
    invited_by  uuid        NOT NULL,
    invited_at  timestamptz NOT NULL,
    accepted_by uuid,
    accepted_at timestamptz,
    id          uuid PRIMARY KEY
);
CREATE UNIQUE INDEX market_invitations_open ON market_invitations (market_id, email) WHERE email IS NOT NULL;

// A modal built on <dialog>: the browser traps focus, Escape cancels, focus returns afterwards.
import { type FormEvent, type ReactNode, useEffect, useId, useRef } from 'react';

export interface DialogProps {
  title: string;
  open: boolean;
  onClose(): void;
  children: ReactNode;
}

export function Dialog({ title, open, onClose, children }: DialogProps) {
  const ref = useRef<HTMLDialogElement>(null);
  const titleId = useId();
  useEffect(() => {
    const dialog = ref.current;
    if (dialog === null) return;
    if (open && !dialog.open) {
      if (typeof dialog.showModal === 'function') dialog.showModal();
      else dialog.setAttribute('open', '');
    } else if (!open && dialog.open) {
      if (typeof dialog.close === 'function') dialog.close();
      else dialog.removeAttribute('open');
    }
  }, [open]);
  return (
    <dialog
      ref={ref}
      aria-labelledby={titleId}
      onCancel={(event) => {
        event.preventDefault();
        onClose();
      }}
    >
      <h2 id={titleId}>{title}</h2>
      {open && children}
    </dialog>
  );
}

export interface ConfirmProps {
  title: string;
  open: boolean;
  confirmLabel: string;
  danger?: boolean;
  busy?: boolean;
  onConfirm(form: FormData): void;
  onCancel(): void;
  children?: ReactNode;
}

/** Asks before an action; fields inside `children` arrive as FormData. */
export function ConfirmDialog({
  title,
  open,
  confirmLabel,
  danger,
  busy,
  onConfirm,
  onCancel,
  children,
}: ConfirmProps) {
  const submit = (event: FormEvent<HTMLFormElement>) => {
    event.preventDefault();
    onConfirm(new FormData(event.currentTarget));
  };
  return (
    <Dialog title={title} open={open} onClose={onCancel}>
      <form onSubmit={submit} className="dialog-form">
        {children}
        <div className="dialog-actions">
          <button type="button" onClick={onCancel}>
            Cancel
          </button>
          <button type="submit" className={danger ? 'danger' : 'primary'} disabled={busy} aria-busy={busy}>
            {busy ? 'Working…' : confirmLabel}
          </button>
        </div>
      </form>
    </Dialog>
  );
}
